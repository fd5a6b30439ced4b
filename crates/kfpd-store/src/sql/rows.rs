//! Reading columns out of rows, with errors that name the column.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::Error;

fn column_error(index: &dyn std::fmt::Debug, error: sqlx::Error) -> Error {
    Error::Internal(format!("reading column {index:?}: {error}"))
}

pub(crate) fn int<I>(row: &AnyRow, index: I) -> Result<i64, Error>
where
    I: sqlx::ColumnIndex<AnyRow> + std::fmt::Debug + Copy,
{
    row.try_get::<i64, _>(index)
        .map_err(|error| column_error(&index, error))
}

pub(crate) fn opt_int<I>(row: &AnyRow, index: I) -> Result<Option<i64>, Error>
where
    I: sqlx::ColumnIndex<AnyRow> + std::fmt::Debug + Copy,
{
    row.try_get::<Option<i64>, _>(index)
        .map_err(|error| column_error(&index, error))
}

pub(crate) fn text<I>(row: &AnyRow, index: I) -> Result<String, Error>
where
    I: sqlx::ColumnIndex<AnyRow> + std::fmt::Debug + Copy,
{
    Ok(opt_text(row, index)?.unwrap_or_default())
}

pub(crate) fn opt_text<I>(row: &AnyRow, index: I) -> Result<Option<String>, Error>
where
    I: sqlx::ColumnIndex<AnyRow> + std::fmt::Debug + Copy,
{
    match row.try_get::<Option<String>, _>(index) {
        Ok(value) => Ok(value),
        // MySQL reports TEXT columns with a binary collation as BLOB; their bytes are
        // still the UTF-8 text we stored.
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let bytes = row
                .try_get::<Option<Vec<u8>>, _>(index)
                .map_err(|error| column_error(&index, error))?;
            bytes
                .map(String::from_utf8)
                .transpose()
                .map_err(|error| Error::Internal(format!("column {index:?} is not UTF-8: {error}")))
        }
        Err(error) => Err(column_error(&index, error)),
    }
}
