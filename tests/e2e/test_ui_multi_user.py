"""The web UI in multi-user mode, in headless Chromium: the browser sends the user
header an authenticating proxy would add, picks a namespace in the page's header,
and sees, lists and creates in that namespace only."""

import pytest

import multi_user_support
import support
from multi_user_support import client_as
from ui_support import browser, click, console_errors, css, screenshots, wait  # noqa: F401

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(kfpd_bin):
    with multi_user_support.multi_user_server(kfpd_bin, executor="none") as srv:
        yield srv


def run_in(client, namespace: str, name: str) -> str:
    client.create_experiment(f"{name}-experiment", namespace=namespace)
    result = client.create_run_from_pipeline_package(
        str(support.pipeline_file("hello.yaml")),
        arguments={},
        run_name=name,
        experiment_name=f"{name}-experiment",
        namespace=namespace,
    )
    return result.run_id


def as_user(driver, user: str):
    """Every request of the page carries the user header from now on."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"kubeflow-userid": user}})


def choose_namespace(driver, namespace: str):
    field = css(driver, "#namespace")
    field.clear()
    field.send_keys(namespace)
    click(driver, "#namespace-set", "the namespace button")


def test_the_page_lists_and_creates_in_the_chosen_namespace(server, browser, screenshots):
    alice = client_as(server, "alice@example.com", "team-a")
    bob = client_as(server, "bob@example.com", "team-b")
    alices_run = run_in(alice, "team-a", support.unique("alice-run"))
    bobs_run = run_in(bob, "team-b", support.unique("bob-run"))

    as_user(browser, "alice@example.com")
    browser.get(f"{server.base_url}/#/runs")
    browser.execute_script("localStorage.removeItem('kfpd.namespace')")
    browser.refresh()
    # Without a namespace the lists say what to do instead of showing the API's 400.
    wait(browser, lambda d: "Choose a namespace" in css(d, "main").text, "the ask for a namespace")
    browser.save_screenshot(str(screenshots / "multi-user-no-namespace.png"))

    choose_namespace(browser, "team-a")
    wait(browser, lambda d: d.find_elements("css selector", f"tr[data-run-id='{alices_run}']"), "alice's run")
    assert not browser.find_elements("css selector", f"tr[data-run-id='{bobs_run}']")
    browser.save_screenshot(str(screenshots / "multi-user-runs.png"))

    # The choice is kept across a reload.
    browser.refresh()
    wait(browser, lambda d: d.find_elements("css selector", f"tr[data-run-id='{alices_run}']"), "alice's run after a reload")
    assert css(browser, "#namespace").get_attribute("value") == "team-a"

    # An experiment made in the page lands in the chosen namespace.
    name = support.unique("ui-team-experiment")
    browser.get(f"{server.base_url}/#/experiments")
    click(browser, "#new-experiment summary", "the new experiment form")
    css(browser, "#experiment-name-input").send_keys(name)
    click(browser, "#create-experiment", "create")
    wait(browser, lambda d: css(d, "#experiment-name").text == name, "the new experiment")
    experiment_id = browser.current_url.rsplit("/", 1)[-1]
    assert alice.get_experiment(experiment_id=experiment_id).namespace == "team-a"

    # A namespace alice has no role in is refused as the API refuses it.
    browser.get(f"{server.base_url}/#/runs")
    choose_namespace(browser, "team-b")
    wait(browser, lambda d: "Access denied" in css(d, "main").text, "the refusal")
    assert not browser.find_elements("css selector", f"tr[data-run-id='{bobs_run}']")
    browser.save_screenshot(str(screenshots / "multi-user-refused.png"))
    assert [error for error in console_errors(browser, "runs:watch") if "403" not in error] == []


def test_the_pipelines_page_shows_the_namespaces_own_or_the_shared_ones(server, browser, screenshots):
    alice = client_as(server, "alice@example.com", "team-a")
    bob = client_as(server, "bob@example.com", "team-b")
    package = str(support.pipeline_file("hello.yaml"))
    own = alice.upload_pipeline(package, pipeline_name=support.unique("alice-own"), namespace="team-a")
    admin = client_as(server, "admin@example.com", "kubeflow")
    shared = admin.upload_pipeline(package, pipeline_name=support.unique("shared"))
    bobs = bob.upload_pipeline(package, pipeline_name=support.unique("bob-own"), namespace="team-b")

    def listed(driver, pipeline) -> bool:
        return bool(driver.find_elements("css selector", f"tr[data-pipeline-id='{pipeline.pipeline_id}']"))

    as_user(browser, "alice@example.com")
    browser.get(f"{server.base_url}/#/pipelines")
    browser.execute_script("localStorage.setItem('kfpd.namespace', 'team-a')")
    browser.refresh()
    wait(browser, lambda d: listed(d, own), "alice's own pipeline")
    assert not listed(browser, shared) and not listed(browser, bobs)
    assert css(browser, "#pipelines-namespace").get_attribute("aria-selected") == "true"
    browser.save_screenshot(str(screenshots / "multi-user-pipelines.png"))

    click(browser, "#pipelines-shared", "the shared pipelines tab")
    wait(browser, lambda d: listed(d, shared), "the shared pipeline")
    assert not listed(browser, own) and not listed(browser, bobs)

    # An upload on the namespace's tab lands in the namespace.
    click(browser, "#pipelines-namespace", "the namespace tab")
    wait(browser, lambda d: listed(d, own), "alice's own pipeline again")
    name = support.unique("ui-team-pipeline")
    click(browser, "#upload-pipeline summary", "the upload form")
    css(browser, "#upload-pipeline-file").send_keys(package)
    css(browser, "#upload-pipeline-name").send_keys(name)
    click(browser, "#upload-pipeline-submit", "upload")
    wait(browser, lambda d: "/pipelines/details/" in d.current_url, "the new pipeline's page")
    pipeline_id = browser.current_url.rsplit("/", 1)[-1]
    assert alice.get_pipeline(pipeline_id).namespace == "team-a"
    # The earlier test may have left team-b chosen, refused on the first load.
    assert console_errors(browser, "namespace=team-b") == []
