"""Own text vs quoted: every reply, forward and signature form the classifier must not read."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailaudit import zoning
from mailaudit.zoning import fingerprint, split_own_text

CASES = {
    "gmail": (
        "Thanks so much for the intro to Jane!\n\nBest,\nAnn\n\n"
        "On Tue, Mar 3, 2026 at 9:14 AM Bob Stone <bob@example.com> wrote:\n> Ann, meet Jane.\n> Jane, meet Ann.\n",
        "Thanks so much for the intro to Jane!",
    ),
    "gmail_wrapped_header": (
        "Will do.\n\nOn Tue, Mar 3, 2026 at 9:14 AM Bob Stone <\nbob@example.com> wrote:\n\n> Can you call Jane?\n",
        "Will do.",
    ),
    "apple": (
        "Great, I'll reach out to her today.\n\nSent from my iPhone\n\n"
        "On Mar 3, 2026, at 09:14, Dana Ruiz <dana@example.com> wrote:\n\n> You should talk to Priya.\n",
        "Great, I'll reach out to her today.",
    ),
    "outlook_original": (
        "Sounds good.\n\n-----Original Message-----\nFrom: Smith, John\nSent: Monday, May 14, 2001 9:00 AM\n"
        "To: Allen, Phillip\nSubject: deal\n\nPlease call Sally Beck, she can help.\n",
        "Sounds good.",
    ),
    "outlook_header_block": (
        "Forwarding as promised.\n\nFrom: Kim Lee <kim@example.com>\nSent: Monday, May 4, 2026 9:00 AM\n"
        "To: Pat Morgan <pat@example.com>\nSubject: intro?\n\nCould you introduce me to Sam?\n",
        "Forwarding as promised.",
    ),
    "lotus_forward": (
        "Phillip, see below, can you help?\n\n---------------------- Forwarded by Phillip K Allen/HOU/ECT on "
        "10/30/2000 \n09:14 AM ---------------------------\n\n\tFrom:  Stephen Stock  10/27/2000 12:49 PM\n"
        "To: Phillip K Allen/HOU/ECT@ECT\ncc:\nSubject: ERMS\n\nThanks for all your help.\n",
        "Phillip, see below, can you help?",
    ),
    "lotus_reply_block": (
        "Richard,\nThe last paragraph should be changed.\n\n\n\tRichard Deming@ENRON\n\t04/17/2001 04:52 PM\n"
        "\t\t \n\t\t To: Dan J Hyvl/HOU/ECT@ECT\n\t\t cc:\n\t\t Subject: Duke\n\nHere is the confirmation.\n",
        "Richard,\nThe last paragraph should be changed.",
    ),
    "gmail_forward": (
        "Meet Tom, see his note below.\n\n---------- Forwarded message ---------\nFrom: Tom <t@example.com>\n"
        "Date: Mon\nSubject: job\nTo: <pat@example.com>\n\nI am looking for a trading role.\n",
        "Meet Tom, see his note below.",
    ),
    "apple_forward": (
        "FYI\n\nBegin forwarded message:\n\nFrom: Tom <t@example.com>\nSubject: hi\n\nthanks for the help\n",
        "FYI",
    ),
    "angle_quotes_inline": (
        "> Could you introduce me to Sam?\nSure, I'll write to him tonight.\n> And to Lee?\nLee is away.\n",
        "Sure, I'll write to him tonight.\nLee is away.",
    ),
    "dash_signature": (
        "Let me know if I can ever return the favor.\n\n-- \nAnn Lee | Engineer | +1 555 0100\n",
        "Let me know if I can ever return the favor.",
    ),
    "german_reply": (
        "Vielen Dank für die Hilfe!\n\nAm 03.03.2026 um 09:14 schrieb Bob Stone <bob@example.com>:\n> Hallo\n",
        "Vielen Dank für die Hilfe!",
    ),
    "french_outlook": (
        "Merci beaucoup !\n\nDe : Bob Stone <bob@example.com>\nEnvoyé : lundi 4 mai 2026 09:00\n"
        "À : Pat\nObjet : intro\n\nPeux-tu me présenter à Léa ?\n",
        "Merci beaucoup !",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_own_text_excludes_quotes_forwards_and_signatures(name):
    body, own = CASES[name]
    zones = split_own_text(body)
    assert zones.own == own
    assert zones.quoted.strip()  or name in {"dash_signature"}


def test_plain_message_is_all_own_text():
    zones = split_own_text("Hi Pat,\n\nCould you put me in touch with someone at Acme?\n")
    assert "put me in touch" in zones.own
    assert zones.quoted == ""


def test_fingerprint_matches_reply_quote_to_parent_text():
    parent = "Please call Sally Beck in operations, she knows the Duke deal well."
    reply = (
        "Done.\n\n-----Original Message-----\nFrom: Smith, John\nSent: Monday\nTo: Allen\nSubject: deal\n\n"
        "Please call Sally Beck in operations, she knows the Duke deal well.\n"
    )
    zones = split_own_text(reply)
    assert fingerprint(parent) == fingerprint(zones.quoted, quoted=True) != ""
    gmail = "ok\n\nOn Mon, Bob <b@x> wrote:\n> Please call Sally Beck in operations, she knows\n> the Duke deal well.\n"
    assert fingerprint(split_own_text(gmail).quoted, quoted=True) == fingerprint(parent)


# pieces the marker and signature patterns are made of, in any case, so random texts hit every alternative
_PIECES = ["On Mon, Pat wrote:", "---- Forwarded by Ann/HOU/ECT", "-----Original Message-----",
           "Begin forwarded message:", "From: Ann <a@x>", "Sent: Monday", "To: Pat", "Subject: deal", "________",
           "Am Montag schrieb Pat:", "Il giorno Pat ha scritto:", "Op maandag schreef Pat:", "10/12/2001 09:30 AM",
           "-- ", "--", "__", "Sent from my iPhone", "Get Outlook for iOS", "Von meinem iPhone gesendet",
           "Enviado desde mi iPhone", "Le lundi Pat a écrit :", "El lunes Pat escribió:", "plain words", ":", "\t",
           "WROTE:", "sent FROM my phone", "  ", "ſent from my phone"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12), st.lists(st.sampled_from(["\n", " ", ""]), max_size=12),
       st.floats(0, 1))
def test_prefilters_never_skip_a_text_the_patterns_match(pieces, seps, cut):
    """The cheap literal checks before the marker and signature searches are exact: whenever a pattern
    matches a text, or the start of one (the checks read a prefix of the text lowered once), its check says
    it may."""
    text = "".join(p + (seps[i] if i < len(seps) else "\n") for i, p in enumerate(pieces))
    for case in (text, text.upper(), text.lower()):
        low = case.lower() if case.isascii() else None
        for end in (len(case), int(len(case) * cut)):
            if zoning._CUT_MARKERS.search(case[:end]):
                assert zoning._may_cut(low, end)
            if zoning._SIG_START.search(case[:end]):
                assert zoning._may_match(low, end, zoning._SIG_NEEDLES)
