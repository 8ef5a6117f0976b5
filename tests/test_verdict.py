"""Reading the reviewer's free-text reply as a Verdict."""

from __future__ import annotations

import pytest

from assemblyzero.workflow.verdict import Verdict


@pytest.mark.parametrize("text", [
    "VERDICT: APPROVED",
    "verdict: approved\n\nAll good.",
    "  **VERDICT:** APPROVED",
    "Summary first.\n\nVERDICT: APPROVED\n1. a numbered remark is not a finding",
])
def test_approved_has_no_findings(text: str):
    assert Verdict.from_text(text) == Verdict(approved=True, findings=())
    assert Verdict.from_text(text).word == "APPROVED"


def test_bold_lowercase_revise_with_numbered_findings():
    text = ("**Verdict:** revise\n\n"
            "1. Risks: add a mitigation.\n"
            "2) Testing: name the test for each criterion.  \n"
            "- a bullet is not a finding\n")
    assert Verdict.from_text(text) == Verdict(False, ("Risks: add a mitigation.",
                                                      "Testing: name the test for each criterion."))


def test_revise_without_numbered_findings_still_has_one():
    verdict = Verdict.from_text("VERDICT: REVISE\n\nPlease make it better.")
    assert verdict.word == "REVISE" and not verdict.approved
    assert verdict.findings == ("Review: REVISE without numbered findings",)


@pytest.mark.parametrize("text", ["", "garbage", "VERDICT: MAYBE", "VERDICT: REVISED",
                                  "The verdict is: APPROVED"])
def test_garbage_is_revise_with_an_unparseable_finding(text: str):
    verdict = Verdict.from_text(text)
    assert not verdict.approved
    (finding,) = verdict.findings
    assert finding.startswith("Review: unparseable verdict: ")
    assert repr(" ".join(text.split())[:120]) in finding


def test_the_first_verdict_line_counts():
    assert Verdict.from_text("VERDICT: REVISE\n1. a: b\nVERDICT: APPROVED").findings == ("a: b",)


def test_repeated_names_the_first_finding_seen_before_ignoring_case_and_spacing():
    verdict = Verdict(False, ("Testing: new.", "Risks:  add a  MITIGATION.", "Scope: x."))
    assert verdict.repeated(["scope: x.", "risks: add a mitigation."]) == (
        "Risks:  add a  MITIGATION.")
    assert verdict.repeated(["Testing: old."]) is None
    assert verdict.repeated([]) is None


def test_a_verdict_is_frozen():
    with pytest.raises(AttributeError):
        Verdict(True).approved = False  # type: ignore[misc]
