"""Data survives a restart of kfpd on the same data directory."""

import pathlib
import shutil
import tempfile

import kfp
import pytest

from support import KfpdServer, eq_filter, pipeline_file, unique


@pytest.fixture
def workdir():
    path = pathlib.Path(tempfile.mkdtemp(prefix="kfpd-e2e-restart-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_everything_survives_restart(kfpd_bin, workdir):
    first = KfpdServer(kfpd_bin, workdir)
    try:
        client = kfp.Client(host=first.start())
        experiment = client.create_experiment(name=unique("restart"))
        pipeline = client.upload_pipeline(str(pipeline_file("add.yaml")), pipeline_name=unique("restart"))
        version = client.list_pipeline_versions(pipeline_id=pipeline.pipeline_id).pipeline_versions[0]
        run = client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=unique("restart-run"),
            pipeline_id=pipeline.pipeline_id,
            version_id=version.pipeline_version_id,
            params={"a": 1, "b": 2},
        )
        rr = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=unique("restart-rr"),
            pipeline_id=pipeline.pipeline_id,
            version_id=version.pipeline_version_id,
            params={"a": 1, "b": 2},
            cron_expression="0 0 * * * *",
            enabled=False,
        )
        default_id = client.get_experiment(experiment_name="Default").experiment_id
    finally:
        code = first.stop()
    assert code == 0, f"kfpd exited with {code} on SIGTERM\n{first.describe()}"

    second = KfpdServer(kfpd_bin, workdir)
    try:
        client = kfp.Client(host=second.start())
        assert client.get_experiment(experiment_id=experiment.experiment_id).display_name == experiment.display_name
        assert client.get_pipeline(pipeline.pipeline_id).name == pipeline.name
        fetched_run = client.get_run(run.run_id)
        assert fetched_run.state == "PENDING"
        assert fetched_run.runtime_config.parameters == {"a": 1, "b": 2}
        fetched_rr = client.get_recurring_run(rr.recurring_run_id)
        assert fetched_rr.status == "DISABLED"
        assert fetched_rr.trigger.cron_schedule.cron == "0 0 * * * *"
        # The default experiment is not created a second time.
        defaults = client.list_experiments(filter=eq_filter("display_name", "Default")).experiments
        assert [e.experiment_id for e in defaults] == [default_id]
    finally:
        second.stop()
