"""The embedded offline provider: deterministic drafts, scripted reviews, fault injection."""

from __future__ import annotations

import dataclasses
import itertools
import json

import jsonschema
import pytest
from conftest import BRIEF, ISSUE

from assemblyzero.ids import Kind
from assemblyzero.providers import ModelRequest, ProviderError, load_provider
from assemblyzero.providers.offline import OfflineProvider, create
from assemblyzero.workflow.templates import load_template, split_sections
from assemblyzero.workflow.verdict import VERDICT_SCHEMA, Verdict

LLD_SECTIONS = load_template(Kind.LLD).sections
ISSUE_SECTIONS = load_template(Kind.ISSUE).sections
ISSUE_TEXT = ISSUE.format(title="Feature 42", what="shared expenses", noun="expense")
BRIEF_TEXT = BRIEF.format(title="Idea digest", what="a weekly digest")


def request(role: str = "draft", *, item_id: str = "42", kind: str = "lld",
            source: str = ISSUE_TEXT, sections: tuple[str, ...] = LLD_SECTIONS,
            draft: str = "", findings: tuple[str, ...] = (), iteration: int = 1) -> ModelRequest:
    return ModelRequest(role=role, kind=kind, item_id=item_id, title="Feature 42",
                        source=source, sections=sections, prompt="write it", draft=draft,
                        findings=findings, iteration=iteration)


def bullets(text: str) -> list[str]:
    return [line[2:] for line in text.splitlines() if line.startswith("- ")]


def test_create_returns_an_offline_provider():
    provider = create("default")
    assert isinstance(provider, OfflineProvider)
    assert provider.name == "offline" and provider.model == "default"
    assert isinstance(load_provider("offline:big"), OfflineProvider)


def test_drafts_are_deterministic():
    first = OfflineProvider("default").complete(request())
    again = OfflineProvider("default").complete(request())
    assert first.text == again.text
    assert OfflineProvider("default").complete(request()).text == first.text


@pytest.mark.parametrize(("kind", "source", "sections"), [
    ("lld", ISSUE_TEXT, LLD_SECTIONS),
    ("issue", BRIEF_TEXT, ISSUE_SECTIONS),
    ("lld", ISSUE_TEXT, ("Summary", "Plan")),
])
def test_a_draft_fills_every_requested_section_from_the_source(kind: str, source: str,
                                                               sections: tuple[str, ...]):
    reply = OfflineProvider("default").complete(
        request(kind=kind, source=source, sections=sections))
    found = split_sections(reply.text)
    assert tuple(found) == sections
    for name in sections:
        facts = bullets(found[name])
        assert facts, name
        assert all(fact in source for fact in facts), (name, facts)
    assert reply.text.startswith("# Feature 42\n")
    assert reply.output_tokens == len(reply.text.split())


def test_a_draft_maps_source_sections_to_their_counterparts():
    found = split_sections(OfflineProvider("default").complete(request()).text)
    source = split_sections(ISSUE_TEXT)
    assert "Rounding errors when amounts are split three ways." in found["Risks"]
    for line in source["Requirements"].splitlines():
        assert line.split(". ", 1)[1] in found["Proposed Changes"]


def test_a_source_without_text_still_fills_every_section():
    found = split_sections(OfflineProvider("default").complete(request(source="")).text)
    assert tuple(found) == LLD_SECTIONS
    assert all(bullets(found[name]) == ["Feature 42"] for name in LLD_SECTIONS)


@pytest.mark.parametrize("approve_at", [1, 2, 4])
def test_review_approves_exactly_at_the_configured_iteration(
        monkeypatch: pytest.MonkeyPatch, approve_at: int):
    monkeypatch.setenv("ASSEMBLYZERO_OFFLINE_APPROVE_AT", str(approve_at))
    provider = OfflineProvider("default")
    verdicts = [Verdict.from_text(provider.complete(request("review", iteration=n)).text)
                for n in range(1, 7)]
    assert [v.word for v in verdicts] == ["REVISE"] * (approve_at - 1) + ["APPROVED"] * (
        7 - approve_at)
    for verdict in verdicts:
        assert len(verdict.findings) == (0 if verdict.approved else 2)


def test_review_approves_at_iteration_two_by_default():
    provider = OfflineProvider("default")
    assert not Verdict.from_text(provider.complete(request("review", iteration=1)).text).approved
    assert Verdict.from_text(provider.complete(request("review", iteration=2)).text).approved


def test_review_findings_change_from_one_iteration_to_the_next(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASSEMBLYZERO_OFFLINE_APPROVE_AT", "10")
    provider = OfflineProvider("default")
    found = [Verdict.from_text(provider.complete(request("review", iteration=n)).text).findings
             for n in range(1, 6)]
    for before, after in itertools.pairwise(found):
        assert not set(before) & set(after)


def test_revise_addresses_each_finding_in_its_section_and_fills_missing_ones():
    draft = "# Feature 42\n\n## Risks\n\n- old risk\n"
    findings = ("Risks: add a mitigation.", "Nowhere: something else.")
    reply = OfflineProvider("default").complete(
        request("revise", draft=draft, findings=findings, iteration=2,
                sections=("Risks", "Testing")))
    found = split_sections(reply.text)
    assert tuple(found) == ("Risks", "Testing")
    assert "- old risk" in found["Risks"]
    assert "Revision 2: Risks: add a mitigation." in found["Risks"]
    assert "Revision 2: Nowhere: something else." in found["Testing"]


def test_simulate_fail_fails_exactly_the_named_calls(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASSEMBLYZERO_SIMULATE_FAIL", "7,8:revise")
    provider = OfflineProvider("default")
    outcome = {}
    for item_id in ("7", "8", "9", "78"):
        for role in ("draft", "review", "revise"):
            try:
                provider.complete(request(role, item_id=item_id, iteration=2))
                outcome[item_id, role] = "ok"
            except ProviderError as exc:
                assert f"the {role} call" in str(exc)
                assert "ASSEMBLYZERO_SIMULATE_FAIL" in str(exc)
                outcome[item_id, role] = "failed"
    assert {key for key, value in outcome.items() if value == "failed"} == {
        ("7", "review"), ("8", "revise")}


@pytest.mark.parametrize("name", ["ASSEMBLYZERO_OFFLINE_LATENCY",
                                  "ASSEMBLYZERO_OFFLINE_APPROVE_AT"])
def test_a_non_numeric_setting_is_a_provider_error_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, name: str):
    monkeypatch.setenv(name, "fast")
    with pytest.raises(ProviderError) as caught:
        create("default")
    assert name in str(caught.value)
    assert "'fast'" in str(caught.value)


def test_zero_latency_is_accepted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASSEMBLYZERO_OFFLINE_LATENCY", "0")
    assert OfflineProvider("default").latency == 0.0


SCHEMA = VERDICT_SCHEMA  # the review's schema, as the engine sends it


@pytest.mark.parametrize("iteration", [1, 2, 3])
def test_a_review_with_a_schema_is_the_same_verdict_as_json(monkeypatch: pytest.MonkeyPatch,
                                                           iteration: int):
    monkeypatch.setenv("ASSEMBLYZERO_OFFLINE_APPROVE_AT", "3")
    provider = OfflineProvider("default")
    asked = dataclasses.replace(request("review", iteration=iteration), schema=SCHEMA)
    reply = provider.complete(asked)
    text = provider.complete(request("review", iteration=iteration)).text  # no schema: as today
    assert reply.structured and not provider.complete(request("review")).structured
    verdict = json.loads(reply.text)
    jsonschema.validate(verdict, SCHEMA)
    assert text.startswith(f"VERDICT: {verdict['verdict']}\n")
    numbered = [line.split(". ", 1)[1] for line in text.splitlines() if line[:1].isdigit()]
    assert [f"{f['section']}: {f['text']}" for f in verdict["findings"]] == numbered
    assert {f["severity"] for f in verdict["findings"]} <= {"major"}
    assert verdict["rationale"]
    assert (verdict["verdict"] == "APPROVED") == (iteration >= 3)
    assert reply.output_tokens == len(reply.text.split())


def test_a_schema_changes_nothing_but_the_review():
    provider = OfflineProvider("default")
    plain = provider.complete(request())
    asked = provider.complete(dataclasses.replace(request(), schema=SCHEMA))
    assert asked == plain and not asked.structured
