//! Several authenticators in order: the first that recognises the request's
//! credential decides (the trusted user header, OIDC tokens of the configured
//! issuer, then Kubernetes TokenReview for any other bearer token).

use std::sync::Arc;

use crate::{Authenticator, Error, Identity};

pub struct Chain {
    links: Vec<Arc<dyn Authenticator>>,
}

impl Chain {
    pub fn new(links: Vec<Arc<dyn Authenticator>>) -> Chain {
        Chain { links }
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

#[async_trait::async_trait]
impl Authenticator for Chain {
    /// A rejection ends the chain: a forged token must not fall through to a
    /// weaker authenticator after it.
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<Option<Identity>, Error> {
        for link in &self.links {
            if let Some(identity) = link.authenticate(headers, peer).await? {
                return Ok(Some(identity));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recognises requests carrying header `x-<name>`; "bad" values are refused.
    struct Named(&'static str);

    #[async_trait::async_trait]
    impl Authenticator for Named {
        async fn authenticate(
            &self,
            headers: &http::HeaderMap,
            _peer: Option<std::net::SocketAddr>,
        ) -> Result<Option<Identity>, Error> {
            match headers
                .get(format!("x-{}", self.0))
                .map(|v| v.to_str().unwrap())
            {
                None => Ok(None),
                Some("bad") => Err(Error::Unauthenticated(format!("{} refused", self.0))),
                Some(user) => Ok(Some(Identity {
                    user: format!("{}:{user}", self.0),
                    groups: vec![],
                })),
            }
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[tokio::test]
    async fn the_first_authenticator_that_knows_the_request_decides() {
        let chain = Chain::new(vec![Arc::new(Named("a")), Arc::new(Named("b"))]);
        let user = |found: Option<Identity>| found.map(|identity| identity.user);
        let both = headers(&[("x-a", "alice"), ("x-b", "bob")]);
        assert_eq!(
            user(chain.authenticate(&both, None).await.unwrap()).as_deref(),
            Some("a:alice")
        );
        let second = headers(&[("x-b", "bob")]);
        assert_eq!(
            user(chain.authenticate(&second, None).await.unwrap()).as_deref(),
            Some("b:bob")
        );
        assert!(chain
            .authenticate(&headers(&[]), None)
            .await
            .unwrap()
            .is_none());
        // A refusal is final even when a later authenticator would accept.
        let refused = headers(&[("x-a", "bad"), ("x-b", "bob")]);
        assert!(matches!(
            chain.authenticate(&refused, None).await,
            Err(Error::Unauthenticated(_))
        ));
    }
}
