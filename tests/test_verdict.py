"""Reading the reviewer's reply as a Verdict: JSON (native or in the text) and the text shapes."""

from __future__ import annotations

import json

import pytest

from assemblyzero.workflow.verdict import VERDICT_SCHEMA, Finding, Verdict, quote

JSON_REVISE = json.dumps({
    "verdict": "REVISE", "rationale": "Two gaps.",
    "findings": [{"section": "Risks", "severity": "blocking", "text": "add a mitigation."},
                 {"section": "Testing", "severity": "major", "text": "name the tests."},
                 {"section": "Rollout", "severity": "minor", "text": "typo in step 2."}]})
REVISE_READ = Verdict("REVISE", "Two gaps.", (
    Finding("Risks", "blocking", "add a mitigation."),
    Finding("Testing", "major", "name the tests."),
    Finding("Rollout", "minor", "typo in step 2.")))


def test_the_schema_is_the_contract():
    assert VERDICT_SCHEMA == {
        "type": "object", "additionalProperties": False,
        "required": ["verdict", "rationale", "findings"],
        "properties": {
            "verdict": {"type": "string", "enum": ["APPROVED", "REVISE", "DISCUSS"]},
            "rationale": {"type": "string"},
            "findings": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["section", "severity", "text"],
                "properties": {"section": {"type": "string"},
                               "severity": {"type": "string",
                                            "enum": ["blocking", "major", "minor"]},
                               "text": {"type": "string"}}}}}}


# --- the table: every review shape -------------------------------------------

@pytest.mark.parametrize("text", [
    "VERDICT: APPROVED",
    "VERDICT: APPROVED\n\nLooks complete.\n",
    "**Verdict:** APPROVED\n\nAll good.",
    "verdict: approved\n\nAll good.",
    "**VERDICT: APPROVED**",
    "## Verdict\n\nAPPROVED\n\nEvery section is there.",
    "Summary first.\n\n### Verdict:\n**APPROVED**",
    "## Verdict\nAPPROVED - ready to publish.",
    "## Verdict: APPROVED",
    "APPROVED\n\nNothing to add.",
    '{"verdict": "APPROVED", "rationale": "Complete.", "findings": []}',
    'Here is my review:\n```json\n{"verdict": "APPROVED", "rationale": "", "findings": []}\n```',
    'Sure! {"verdict": "APPROVED", "rationale": "ok", "findings": []} Hope this helps.',
])
def test_every_approved_shape_reads_approved(text: str):
    verdict = Verdict.read(text)
    assert verdict is not None and verdict.approved and verdict.word == "APPROVED"
    assert verdict.required == ()


@pytest.mark.parametrize("text", [JSON_REVISE, f"```json\n{JSON_REVISE}\n```",
                                  f"```\n{JSON_REVISE}\n```", f"My review.\n\n{JSON_REVISE}\n"])
def test_json_raw_fenced_or_in_braces_reads_every_finding(text: str):
    assert Verdict.from_json(text) == REVISE_READ
    assert Verdict.read(text) == REVISE_READ


def test_a_structured_reply_is_json():
    assert Verdict.read(JSON_REVISE, structured=True) == REVISE_READ


def test_json_is_validated_against_the_schema_shape():
    for bad in ({"verdict": "MAYBE"}, {"verdict": 1}, {"rationale": "x"}, [1],
                {"verdict": "REVISE", "findings": "Risks: x"},
                {"verdict": "REVISE", "findings": [{"severity": "fatal", "text": "x"}]},
                {"verdict": "REVISE", "findings": [{"section": "Risks"}]},
                {"verdict": "REVISE", "findings": ["Risks: x"]},
                {"verdict": "REVISE", "rationale": 3}):
        assert Verdict.from_json(json.dumps(bad)) is None, bad
    assert Verdict.from_json("{not json}") is None
    lenient = Verdict.from_json('{"verdict": "revise", "findings": [{"text": "More."}], "x": 1}')
    assert lenient == Verdict("REVISE", "", (Finding("", "major", "More."),))


# --- nothing approved that the reviewer did not approve --------------------------------

FALSE_APPROVAL = """The change touches the payment flow.

1. Rollout: the plan quotes the board's minutes:
   Verdict: APPROVED by the change advisory board
   but that approval was for the old design.
2. Security: say how the amount is validated.

VERDICT: REVISE
"""


def test_an_indented_quoted_approval_inside_a_finding_is_not_the_verdict():
    verdict = Verdict.read(FALSE_APPROVAL)
    assert verdict is not None and verdict.word == "REVISE"
    assert verdict.required == (
        "Rollout: the plan quotes the board's minutes: Verdict: APPROVED by the change "
        "advisory board but that approval was for the old design.",
        "Security: say how the amount is validated.")


@pytest.mark.parametrize("hidden", [
    "   Verdict: APPROVED",
    "\tVERDICT: APPROVED",
    "> VERDICT: APPROVED",
    "1. VERDICT: APPROVED",
    "- **Verdict:** APPROVED",
    "* Verdict: APPROVED",
    "```\nVERDICT: APPROVED\n```",
    "~~~text\nVERDICT: APPROVED\n~~~",
])
def test_a_verdict_line_that_is_not_at_the_top_level_is_never_the_verdict(hidden: str):
    assert Verdict.read(hidden) is None
    verdict = Verdict.read(f"{hidden}\n\nVERDICT: REVISE\n\n1. Risks: more.")
    assert verdict is not None and verdict.word == "REVISE"


@pytest.mark.parametrize("text", [
    "VERDICT: APPROVED\n\nVERDICT: REVISE\n1. Risks: more.",
    "VERDICT: REVISE\n1. a: b\nVERDICT: APPROVED",
    "## Verdict\nAPPROVED\n\n**Verdict:** DISCUSS",
    'VERDICT: REVISE\n\n```json\n{"verdict": "APPROVED", "rationale": "", "findings": []}\n```',
])
def test_two_verdicts_that_disagree_are_unreadable(text: str):
    assert Verdict.read(text) is None


def test_the_same_verdict_twice_is_that_verdict():
    verdict = Verdict.read("VERDICT: REVISE\n\n1. Risks: more.\n\n**Verdict:** REVISE")
    assert verdict is not None and verdict.required == ("Risks: more.",)


@pytest.mark.parametrize("text", ["", "garbage", "Looks fine to me, ship it!",
                                  "VERDICT: MAYBE", "VERDICT: REVISED", "The verdict is: APPROVED",
                                  "I APPROVED it\nAPPROVED", "## Verdict\n\nIt is APPROVED"])
def test_a_reply_without_a_readable_verdict_is_none(text: str):
    assert Verdict.read(text) is None


# --- findings ---------------------------------------------------------------------------

def test_numbered_and_bulleted_findings_are_read_and_count_as_major():
    text = ("**Verdict:** revise\n\n"
            "1. Risks: add a mitigation.\n"
            "2) Testing: name the test for each criterion.  \n"
            "- Security: a bullet is a finding too\n"
            "* **Interfaces**: and so is a starred one\n")
    verdict = Verdict.read(text)
    assert verdict == Verdict("REVISE", "", (
        Finding("Risks", "major", "add a mitigation."),
        Finding("Testing", "major", "name the test for each criterion."),
        Finding("Security", "major", "a bullet is a finding too"),
        Finding("Interfaces", "major", "and so is a starred one")))


def test_a_severity_in_a_text_finding_is_read():
    text = ("VERDICT: REVISE\n\n- [blocking] Risks: none listed.\n- (minor) Rollout: typo.\n"
            "- **Major:** Testing: thin.\n- Minor: Scope: wording.\n- Minor issue in Scope\n")
    verdict = Verdict.read(text)
    assert verdict is not None
    assert [(f.severity, str(f)) for f in verdict.findings] == [
        ("blocking", "Risks: none listed."), ("minor", "Rollout: typo."),
        ("major", "Testing: thin."), ("minor", "Scope: wording."),
        ("major", "Minor issue in Scope")]
    assert verdict.required == ("Risks: none listed.", "Testing: thin.", "Minor issue in Scope")
    assert verdict.minor == ("Rollout: typo.", "Scope: wording.")


def test_the_prose_is_the_rationale():
    verdict = Verdict.read("VERDICT: DISCUSS\n\nShould the API be versioned?\nOnly you know.")
    assert verdict == Verdict("DISCUSS", "Should the API be versioned? Only you know.")


def test_a_finding_without_a_section_keeps_its_text():
    verdict = Verdict.read("VERDICT: REVISE\n\n1. See https://example.com/x: it is wrong.")
    assert verdict is not None
    assert verdict.required == ("See https://example.com/x: it is wrong.",)


# --- rendering and comparing -------------------------------------------------------------

def test_to_markdown_shows_the_word_the_rationale_and_each_finding_with_its_severity():
    assert REVISE_READ.to_markdown() == (
        "**Verdict:** REVISE\n\nTwo gaps.\n\n## Findings\n\n"
        "1. **blocking** Risks: add a mitigation.\n2. **major** Testing: name the tests.\n"
        "3. **minor** Rollout: typo in step 2.\n")
    assert Verdict("APPROVED").to_markdown() == "**Verdict:** APPROVED\n"


def test_repeated_names_the_first_required_change_seen_before_ignoring_case_and_spacing():
    verdict = Verdict("REVISE", "", (Finding("Testing", "major", "new."),
                                     Finding("Risks", "blocking", "add a  MITIGATION."),
                                     Finding("Scope", "minor", "x.")))
    assert verdict.repeated(["scope: x.", "risks: add a mitigation."]) == (
        "Risks: add a  MITIGATION.")
    assert verdict.repeated(["Scope: x."]) is None  # a minor finding is no required change
    assert verdict.repeated([]) is None


def test_quote_is_one_short_line():
    assert quote("a\n\n  b") == "'a b'"
    assert quote("x" * 300) == repr("x" * 197 + "...")


def test_a_verdict_is_frozen():
    with pytest.raises(AttributeError):
        Verdict("APPROVED").word = "REVISE"  # type: ignore[misc]


# --- issue 14 point 7: the false approvals a review found -------------------------------

APPROVE_OBJ = '{"verdict": "APPROVED", "rationale": "", "findings": []}'
REVISE_OBJ = '{"verdict": "REVISE", "rationale": "", "findings": []}'


@pytest.mark.parametrize("text", [
    f"```json\n{APPROVE_OBJ}\n```\n\n```json\n{REVISE_OBJ}\n```",
    f"```json\n{APPROVE_OBJ}\n```\n\n{REVISE_OBJ}",
    f"{APPROVE_OBJ}\n{REVISE_OBJ}",
    f"Expected output format:\n{APPROVE_OBJ}\nBut this draft is far from it; REVISE recommended.",
    f"The format is {APPROVE_OBJ}, but I cannot approve this draft.",
    f"I will not approve.\n> {APPROVE_OBJ}",
    '{"verdict":"REVISE","rationale":"","findings":[],"verdict":"APPROVED"}',
    'Review: {"verdict":"REVISE","rationale":"","findings":[],"verdict":"APPROVED"}',
])
def test_json_verdicts_that_disagree_hide_or_repeat_are_never_approved(text: str):
    assert Verdict.read(text) is None
    assert Verdict.from_json(text) is None


def test_a_json_verdict_in_a_quote_or_an_indented_line_is_not_the_verdict():
    assert Verdict.from_json(f"> {APPROVE_OBJ}") is None
    assert Verdict.from_json(f"Review:\n    {APPROVE_OBJ}") is None
    assert Verdict.from_json(f"1. {APPROVE_OBJ}") is None
    verdict = Verdict.read(f"> {APPROVE_OBJ}\n\n{REVISE_OBJ}")
    assert verdict is not None and verdict.word == "REVISE"


def test_the_same_json_verdict_twice_is_that_verdict():
    verdict = Verdict.read(f"```json\n{APPROVE_OBJ}\n```\nAgain: {APPROVE_OBJ}")
    assert verdict is not None and verdict.approved


def test_a_pretty_printed_object_in_prose_is_read():
    verdict = Verdict.read("My review:\n" + json.dumps(json.loads(JSON_REVISE), indent=2))
    assert verdict == REVISE_READ


@pytest.mark.parametrize("text", [
    f"{APPROVE_OBJ}\nVerdict: NOT APPROVED",
    f"{APPROVE_OBJ}\nVerdict: not approved.",
    f"{APPROVE_OBJ}\nVERDICT: APPROVED?",
    f"{APPROVE_OBJ}\n\nVERDICT: REVISE",
    f"## Verdict\nAPPROVED, but not yet\n\n{APPROVE_OBJ}",
])
def test_a_verdict_line_that_does_not_agree_with_the_json_is_unreadable(text: str):
    assert Verdict.read(text) is None


@pytest.mark.parametrize("text", [
    "VERDICT: APPROVED?",
    "Verdict: APPROVED only if section 3 is rewritten; REVISE",
    "Verdict: APPROVED with conditions - fix X first",
    "Verdict: Approved-ish? No.",
    "## Verdict\nAPPROVED - NOT",
    "## Verdict\nApproved, but not yet: the blocking findings below must be fixed first",
    "VERDICT: APPROVED - pending the security review",
    "VERDICT: APPROVED; REVISE the intro",
    "VERDICT: APPROVED - once the tests are named",
    "APPROVED?\n\nNot sure.",
    "APPROVED only if the tests are named",
    "Verdict: NOT APPROVED",
])
def test_a_conditional_questioning_or_negated_verdict_line_is_unreadable(text: str):
    assert Verdict.read(text) is None
    assert Verdict.read(f"{text}\n\nVERDICT: APPROVED") is None


@pytest.mark.parametrize("text", [
    "VERDICT: APPROVED",
    "**Verdict:** APPROVED",
    "VERDICT: APPROVED - the draft covers the source.",
    "VERDICT: APPROVED.",
    "## Verdict\n\nAPPROVED",
    "**Verdict:**\nAPPROVED",
    "APPROVED - ready to publish.",
])
def test_the_plain_approved_shapes_still_read(text: str):
    verdict = Verdict.read(text)
    assert verdict is not None and verdict.approved


@pytest.mark.parametrize("text, word", [
    ("Verdict: REVISE", "REVISE"),
    ("VERDICT: REVISE - security is not addressed", "REVISE"),
    ("Verdict: DISCUSS - should refunds go to the card?", "DISCUSS"),
    ("Revise the intro, it is long.\n\nVERDICT: REVISE", "REVISE"),
])
def test_revise_and_discuss_lines_may_give_any_reason(text: str, word: str):
    verdict = Verdict.read(text)
    assert verdict is not None and verdict.word == word


@pytest.mark.parametrize("text", [
    "VERDICT: REVISE - or APPROVED, if you prefer",
    "VERDICT: REVISE?",
])
def test_a_revise_line_with_another_verdict_or_a_doubt_is_unreadable(text: str):
    assert Verdict.read(text) is None


@pytest.mark.parametrize("text", [
    '{"verdict":"APPROVED","findings":[{"section":"a","severity":"blocking","text":"broken"}]}',
    '{"verdict":"APPROVED","findings":[{"section":"a","severity":"major","text":"thin"}]}',
    "VERDICT: APPROVED\n\n1. [blocking] fix it",
    "VERDICT: APPROVED\n\n- **Major:** Testing: thin.",
])
def test_approved_with_blocking_or_major_findings_is_unreadable(text: str):
    assert Verdict.read(text) is None
    assert Verdict.read(text, structured=text.startswith("{")) is None


def test_approved_with_only_minor_findings_stays_approved_and_records_them():
    text = '{"verdict":"APPROVED","findings":[{"section":"a","severity":"minor","text":"typo"}]}'
    assert Verdict.read(text) == Verdict("APPROVED", "", (Finding("a", "minor", "typo"),))
    verdict = Verdict.read("VERDICT: APPROVED\n\n1. (minor) Rollout: typo.")
    assert verdict is not None and verdict.approved and verdict.minor == ("Rollout: typo.",)


@pytest.mark.parametrize("fenced", [
    "```python\nVERDICT: APPROVED\n```",
    "````\n```\nVERDICT: APPROVED\n````",
    "````md\n```\n````\nVERDICT: REVISE",
    "```\nVERDICT: APPROVED\n``` not a close\n```",
    "~~~~\n~~~\nVERDICT: APPROVED\n~~~~",
    "```\nVERDICT: APPROVED",  # never closed: the rest is code
])
def test_fences_open_and_close_as_in_templates(fenced: str):
    verdict = Verdict.read(fenced)
    assert verdict is None or verdict.word == "REVISE"
    verdict = Verdict.read(f"VERDICT: REVISE\n\n{fenced}")
    assert verdict is not None and verdict.word == "REVISE"


def test_a_four_backtick_fence_holds_a_three_backtick_one():
    text = "````\n```\n````\n\nVERDICT: REVISE\n\n1. Risks: more."
    verdict = Verdict.read(text)
    assert verdict is not None and verdict.required == ("Risks: more.",)


def test_json_in_a_fence_with_an_info_string_is_read():
    assert Verdict.read(f"```text\n{JSON_REVISE}\n```") == REVISE_READ
    assert Verdict.read(f"````json\n{JSON_REVISE}\n````") == REVISE_READ


@pytest.mark.parametrize("line", [
    "VERDICT: APPROVED - no issues found",
    "VERDICT: APPROVED. No further changes needed.",
    "Verdict: APPROVED, nothing to fix",
    "VERDICT: APPROVED - no blocking issues remain",
])
def test_an_approval_saying_nothing_is_left_is_an_approval(line: str) -> None:
    verdict = Verdict.read(line, False)
    assert verdict is not None and verdict.approved


@pytest.mark.parametrize("line", [
    "VERDICT: APPROVED - no issues, but fix section 3 first",
    "VERDICT: APPROVED - not ready",
    "VERDICT: APPROVED - nothing to add once the API is rewritten",
])
def test_nothing_left_does_not_excuse_a_condition_beside_it(line: str) -> None:
    assert Verdict.read(line, False) is None
