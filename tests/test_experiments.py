"""Experiments on templates, end to end: variants assigned per recipient at enqueue, rendered
by the real email worker to the SMTP peer, results read from the analytics rollups,
concluding (by hand and by itself) saving the winner as the template's next version."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from producer import receipts
from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from shared.db.session import session_scope
from shared.templates import experiments, store
from tests.conftest import SERVER_KEY, Fleet, final_status
from tests.gateway.server import LiveServer
from tests.readme import example_after
from tests.sinks.smtp_sink import SmtpSink
from workers.analytics import fold

API = {"Authorization": f"Bearer {SERVER_KEY}"}


@dataclass
class World:
    settings: Settings
    service: NotificationService
    smtp: SmtpSink
    api: httpx.Client
    template: str

    def start(self, **more: Any) -> dict[str, Any]:
        body = {
            "name": "Subject line test",
            "template": self.template,
            "channel": "email",
            "variants": [
                {"name": "control", "weight": 50},
                {"name": "urgent", "weight": 50, "subject": "Last day: {{discount}}% off"},
            ],
            **more,
        }
        answer = self.api.post("/api/experiments", json=body)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())


def fold_all(settings: Settings) -> None:
    while fold(settings):
        pass


@pytest.fixture
def world(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], smtp: SmtpSink
) -> Iterator[World]:
    settings = make_settings(EMAIL_HOST=smtp.host, EMAIL_PORT=str(smtp.port))
    template = f"sale-{uuid.uuid4().hex[:8]}"
    with session_scope(settings.database_url) as session:
        given = store.TemplateInput.model_validate(
            {
                "key": template,
                "channel": "email",
                "subject": "Our sale: {{discount}}% off",
                "text": "Hi {{name}}",
                "sampleData": {"discount": 10, "name": "Ann"},
            }
        )
        store.save(session, given, default_locale="en")
    experiments.forget_running()
    fleet(settings, [Channel.EMAIL])
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, headers=API) as api:
        yield World(settings, NotificationService(settings), smtp, api, template)
    experiments.forget_running()


def test_each_recipient_gets_one_variant_and_receives_it(world: World) -> None:
    """Given a running experiment, then each message records its recipient's variant, the
    same user gets the same one on every message, and the email carries that variant."""
    experiment = world.start()
    sent: dict[str, str] = {}
    for i in range(30):
        message_id = world.service.send_email(
            to=f"user{i}@example.com",
            template=world.template,
            data={"discount": 20, "name": "A"},
            user_id=f"u{i}",
        )
        sent[message_id] = f"user{i}@example.com"
    again = world.service.send_email(
        to="user0@example.com", template=world.template, data={"discount": 20, "name": "A"}, user_id="u0"
    )
    mails = world.smtp.wait_for(31)
    subjects = {str(mail["To"]): str(mail["Subject"]) for mail in mails}
    variants = {}
    for message_id, address in sent.items():
        status = final_status(world.service, message_id)
        assert status["status"] == "sent"
        assert status["experimentId"] == experiment["id"]
        variants[address] = status["variant"]
        expected = "Last day: 20% off" if status["variant"] == "urgent" else "Our sale: 20% off"
        assert subjects[address] == expected
    assert set(variants.values()) == {"control", "urgent"}
    assert final_status(world.service, again)["variant"] == variants["user0@example.com"]

    fold_all(world.settings)
    shown = world.api.get(f"/api/experiments/{experiment['id']}").json()
    trials = {r["name"]: r["trials"] for r in shown["results"]}
    assert trials["control"] + trials["urgent"] == 31
    [comparison] = shown["comparisons"]
    assert comparison["verdict"] == "insufficient_data" and shown["best"] is None


def test_concluding_promotes_the_variant_for_everyone(world: World) -> None:
    experiment = world.start()
    refused = world.api.post(f"/api/experiments/{experiment['id']}/conclude", json={})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "experiment_conflict"
    answer = world.api.post(f"/api/experiments/{experiment['id']}/conclude", json={"variant": "urgent"})
    assert answer.status_code == 200, answer.text
    concluded = answer.json()
    assert (concluded["status"], concluded["winner"], concluded["promotedVersion"]) == (
        "concluded",
        "urgent",
        2,
    )
    experiments.forget_running()

    message_id = world.service.send_email(
        to="late@example.com", template=world.template, data={"discount": 5, "name": "B"}, user_id="late"
    )
    status = final_status(world.service, message_id)
    assert (status["templateVersion"], status["variant"]) == (2, None)
    [mail] = world.smtp.wait_for(1)
    assert str(mail["Subject"]) == "Last day: 5% off"
    again = world.api.post(f"/api/experiments/{experiment['id']}/stop")
    assert again.status_code == 409


def test_a_stopped_experiment_keeps_its_results_and_assigns_nobody(world: World) -> None:
    experiment = world.start()
    first = world.service.send_email(
        to="a@example.com", template=world.template, data={"discount": 1, "name": "A"}
    )
    assert final_status(world.service, first)["variant"] in ("control", "urgent")
    stopped = world.api.post(f"/api/experiments/{experiment['id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    experiments.forget_running()
    later = world.service.send_email(
        to="b@example.com", template=world.template, data={"discount": 1, "name": "B"}
    )
    assert final_status(world.service, later)["variant"] is None
    fold_all(world.settings)
    shown = world.api.get(f"/api/experiments/{experiment['id']}").json()
    assert sum(r["trials"] for r in shown["results"]) == 1
    # A new one may start once the first is no longer running; both are listed, page by page.
    world.start(name="second")
    first_page = world.api.get("/api/experiments", params={"template": world.template, "limit": 1}).json()
    assert [e["name"] for e in first_page["items"]] == ["Subject line test"]
    cursor = first_page["nextCursor"]
    second_page = world.api.get(
        "/api/experiments", params={"template": world.template, "cursor": cursor}
    ).json()
    assert ([e["name"] for e in second_page["items"]], second_page["nextCursor"]) == (["second"], None)


def test_a_significant_winner_promotes_itself(world: World) -> None:
    """Given autoPromote and results where the variant clearly wins, the folder's check
    concludes the experiment and saves the variant as the template's next version."""
    experiment = world.start(autoPromote=True, metric="opened", minSample=100)
    ids = []
    for i in range(400):
        ids.append(
            world.service.send_email(
                to=f"p{i}@example.com",
                template=world.template,
                data={"discount": 3, "name": "P"},
                user_id=f"p{i}",
            )
        )
    for message_id in ids:
        final_status(world.service, message_id)
    with system_scope(world.settings.database_url) as session:
        # Opens, as a person's tracking receipts would record them: 10% of the control's
        # emails, 40% of the variant's.
        rows = session.execute(
            NotificationLog.__table__.select().where(NotificationLog.id.in_(ids))
        ).mappings()
        for n, row in enumerate(rows):
            share = 10 if row["variant"] == "control" else 40
            if n % 100 < share:
                receipts.record(
                    session,
                    world.settings,
                    receipts.Receipt(
                        message_id=row["id"],
                        type="opened",
                        provider="tracking",
                        code="human",
                        dedupe_key=f"open:{row['id']}",
                    ),
                    receipts.Of(row["user_id"], "email"),
                )
    fold_all(world.settings)
    assert experiments.promote_significant(world.settings) == [experiment["id"]]
    shown = world.api.get(f"/api/experiments/{experiment['id']}").json()
    assert (shown["status"], shown["winner"]) == ("concluded", "urgent")
    with session_scope(world.settings.database_url) as session:
        [current] = store.current(session, world.template, "email", "en")
        assert current.subject == "Last day: {{discount}}% off"
    with system_scope(world.settings.database_url) as session:
        session.execute(update(NotificationLog).where(NotificationLog.id.in_(ids)).values(experiment_id=None))


def test_bad_experiments_are_refused_with_the_reason(world: World) -> None:
    base = {"name": "x", "template": world.template, "channel": "email"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**base, "variants": [{"name": "only", "weight": 1}]}, 422, "validation_error"),
        (
            {**base, "variants": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1, "subject": "x"}]},
            422,
            "validation_error",
        ),
        (
            {**base, "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 0, "subject": "x"}]},
            422,
            "validation_error",
        ),
        (
            {**base, "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]},
            422,
            "validation_error",
        ),
        (
            {
                **base,
                "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "subject": "{{#if}}"}],
            },
            400,
            "invalid_template",
        ),
        (
            {**base, "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "sms": "x"}]},
            400,
            "invalid_template",
        ),
        (
            {
                **base,
                "template": "nope",
                "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "subject": "x"}],
            },
            404,
            "not_found",
        ),
        (
            {
                **base,
                "metric": "liked",
                "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "subject": "x"}],
            },
            422,
            "validation_error",
        ),
    ]
    for body, status, code in cases:
        answer = world.api.post("/api/experiments", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"]["code"] == code, (body, answer.text)
    world.start()
    twice = world.api.post(
        "/api/experiments",
        json={**base, "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "subject": "x"}]},
    )
    assert twice.status_code == 409
    assert world.api.get("/api/experiments/nope").status_code == 404


def test_the_readme_example_starts_an_experiment_and_reads_its_results(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    with session_scope(world.settings.database_url) as session:
        given = store.TemplateInput.model_validate(
            {
                "key": "spring-sale",
                "channel": "email",
                "subject": "Spring sale, {{name}}",
                "text": "Hi {{name}}",
            }
        )
        store.save(session, given, default_locale="en")
    code = example_after("The control renders the template as it is:")
    exec(code, {"gateway": str(world.api.base_url).rstrip("/"), "key": SERVER_KEY})
    printed = capsys.readouterr().out
    assert printed.strip() == "running [('control', 0), ('last-day', 0)]"
    with system_scope(world.settings.database_url) as session:
        [running] = [
            e for e in experiments.list_page(session, None, 100, "spring-sale")[0] if e.status == "running"
        ]
        experiments.stop(session, running.id)
