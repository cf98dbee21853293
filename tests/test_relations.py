"""The eight flags: per flag a scenario mailbox with a positive case and a near-miss twin at every threshold,
in both directions (by='them': the contact did it; by='me': the owner did it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from relgen import AS_OF, Box, ago, config, flag, flags

X = "Xena Park <x@example.com>"
Y = "Yuri Tan <y@example.com>"
Z = "Zoe Ward <z@example.com>"
C1, C2, C3 = "c1@example.com", "c2@example.com", "c3@example.com"
H, D, S = timedelta(hours=1), timedelta(days=1), timedelta(seconds=1)


def ask_burst(box: Box, by: str, times: list[datetime], who: str = X) -> list[str]:
    """Asks in threads of their own, from the contact (by='them') or from the owner (by='me')."""
    if by == "them":
        return [box.receive(who, t, ["intro_request"]) for t in times]
    return [box.send(who, t, ["intro_request"]) for t in times]


# glomming ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["them", "me"])
@pytest.mark.parametrize(("last", "hit"), [(24 * H, True), (24 * H + S, False)])
def test_glomming_three_asks_within_24_hours(tmp_path, by, last, hit):
    box = Box()
    start = ago(30)
    ask_burst(box, by, [start, start + 12 * H, start + last])
    rel = box.audit(tmp_path)
    assert (("glomming", by) in flags(rel, "x@example.com")) is hit


@pytest.mark.parametrize("by", ["them", "me"])
@pytest.mark.parametrize(("last", "hit"), [(7 * D, True), (7 * D + S, False)])
def test_glomming_five_asks_within_7_days(tmp_path, by, last, hit):
    box = Box()
    start = ago(30)
    ask_burst(box, by, [start + k * 42 * H for k in range(4)] + [start + last])  # never 3 within 24 hours
    rel = box.audit(tmp_path)
    assert (("glomming", by) in flags(rel, "x@example.com")) is hit


def test_glomming_needs_five_in_a_week_not_four(tmp_path):
    box = Box()
    ask_burst(box, "them", [ago(30) + k * 40 * H for k in range(4)])
    assert ("glomming", "them") not in flags(box.audit(tmp_path), "x@example.com")


def test_glomming_detail_and_evidence(tmp_path):
    box = Box()
    day = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)
    ids = ask_burst(box, "them", [day, day + H, day + 2 * H, day + 3 * H])
    f = flag(box.audit(tmp_path), "x@example.com", "glomming", "them")
    assert f["detail"] == "asked you for 4 introductions within 3 hours on 12 May"
    assert f["evidence"] == ids and all(i.startswith("<") and i.endswith(">") for i in ids)


def test_glomming_by_me_detail(tmp_path):
    box = Box()
    day = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)
    ask_burst(box, "me", [day, day + H, day + 2 * H])
    f = flag(box.audit(tmp_path), "x@example.com", "glomming", "me")
    assert f["detail"] == "you asked them for 3 introductions within 2 hours on 12 May"


@pytest.mark.parametrize(("third", "hit"), [(ago(90), True), (ago(90) - S, False)])
def test_glomming_is_reported_when_its_triggering_ask_is_in_the_window(tmp_path, third, hit):
    box = Box()
    ask_burst(box, "them", [third - 2 * H, third - H, third])
    assert (("glomming", "them") in flags(box.audit(tmp_path), "x@example.com")) is hit


# asks_only -----------------------------------------------------------------------------------------------


def threads(box: Box, by: str, asks: int, others: int, who: str = X, start: float = 80) -> None:
    """`asks` threads opened with an ask then `others` opened without, 5 days apart."""
    send = box.receive if by == "them" else box.send
    for k in range(asks + others):
        send(who, ago(start - 5 * k), ["intro_request"] if k < asks else [])


@pytest.mark.parametrize("by", ["them", "me"])
@pytest.mark.parametrize(("asks", "others", "hit"), [(3, 0, True), (2, 0, False), (3, 1, True), (5, 2, False)])
def test_asks_only_threshold_threads_and_share(tmp_path, by, asks, others, hit):
    box = Box()
    threads(box, by, asks, others)  # 3 of 4 = 75% in; 5 of 7 = 71% out; 2 threads: too few
    rel = box.audit(tmp_path)
    assert (("asks_only", by) in flags(rel, "x@example.com")) is hit


@pytest.mark.parametrize("by", ["them", "me"])
def test_asks_only_not_when_a_give_was_ever_sent(tmp_path, by):
    box = Box()
    threads(box, by, 3, 0)
    send = box.receive if by == "them" else box.send
    send(X, ago(300), ["thank_you"])  # long ago, still a give
    assert ("asks_only", by) not in flags(box.audit(tmp_path), "x@example.com")


def test_asks_only_counts_only_threads_the_contact_started(tmp_path):
    box = Box()
    first = box.send(X, ago(80))
    for k in range(3):
        box.receive(X, ago(70 - k), ["intro_request"], reply_to=first)  # asks, but in my thread
    assert ("asks_only", "them") not in flags(box.audit(tmp_path), "x@example.com")


def test_asks_only_outside_the_window_when_the_last_thread_started_before_it(tmp_path):
    box = Box()
    threads(box, "them", 3, 0, start=120)
    box.send(X, ago(5))
    assert ("asks_only", "them") not in flags(box.audit(tmp_path), "x@example.com")


# dormant_then_ask ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["them", "me"])
@pytest.mark.parametrize(("gap", "hit"), [(180 * D, True), (180 * D - S, False)])
def test_dormant_then_ask_after_180_silent_days(tmp_path, by, gap, hit):
    box = Box()
    ask_at = ago(10)
    box.receive(X, ask_at - gap - D)
    box.send(X, ask_at - gap)
    ask_burst(box, by, [ask_at])
    rel = box.audit(tmp_path)
    assert (("dormant_then_ask", by) in flags(rel, "x@example.com")) is hit


def test_dormant_then_ask_needs_mail_both_ways_before_the_silence(tmp_path):
    box = Box()
    box.receive(X, ago(400))
    box.receive(X, ago(10), ["intro_request"])
    assert ("dormant_then_ask", "them") not in flags(box.audit(tmp_path), "x@example.com")


def test_dormant_then_ask_detail_and_evidence(tmp_path):
    box = Box()
    box.receive(X, ago(300))
    last = box.send(X, ago(250))
    ask = box.receive(X, datetime(2026, 5, 12, 9, tzinfo=UTC), ["intro_request"])
    f = flag(box.audit(tmp_path), "x@example.com", "dormant_then_ask", "them")
    assert f["evidence"] == [last, ask]
    assert f["detail"] == "asked you for an introduction on 12 May after 230 days of silence (last mail 24 Sep 2025)"


# no_thanks -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["them", "me"])
@pytest.mark.parametrize(("thanks_after", "hit"), [(14 * D, False), (14 * D + S, True), (None, True)])
def test_no_thanks_after_a_handoff(tmp_path, by, thanks_after, hit):
    box = Box()
    helped = ago(40)
    if by == "them":
        box.send([X, Y], helped, ["handoff"])
    else:
        box.receive(X, helped, ["handoff"], cc=[Y])
    if thanks_after is not None:
        (box.receive if by == "them" else box.send)(X, helped + thanks_after, ["thank_you"])
    rel = box.audit(tmp_path)
    assert (("no_thanks", by) in flags(rel, "x@example.com")) is hit


@pytest.mark.parametrize("by", ["them", "me"])
def test_no_thanks_after_a_reply_to_an_ask(tmp_path, by):
    box = Box()
    [ask] = ask_burst(box, by, [ago(40)])
    reply = (box.send if by == "them" else box.receive)(X, ago(39), reply_to=ask)
    f = flag(box.audit(tmp_path), "x@example.com", "no_thanks", by)
    assert f["evidence"] == [ask, reply]
    assert f["detail"] == (
        "no thank-you within 14 days for your reply to their request on 23 Apr" if by == "them"
        else "you sent no thank-you within 14 days for their reply to your request on 23 Apr"
    )


def test_no_thanks_waits_14_days_before_judging(tmp_path):
    box = Box()
    box.send(X, ago(days=14), ["handoff"])  # 14 days exactly: the period ends at as_of, not before
    box.send(Y, ago(days=14, seconds=1), ["handoff"])
    rel = box.audit(tmp_path)
    assert ("no_thanks", "them") not in flags(rel, "x@example.com")
    assert ("no_thanks", "them") in flags(rel, "y@example.com")


def test_no_thanks_a_thank_you_before_the_help_does_not_count(tmp_path):
    box = Box()
    box.receive(X, ago(41), ["thank_you"])
    box.send(X, ago(40), ["handoff"])
    assert ("no_thanks", "them") in flags(box.audit(tmp_path), "x@example.com")


def test_no_thanks_counted_once_per_help_and_summarised(tmp_path):
    box = Box()
    box.send(X, datetime(2026, 3, 10, tzinfo=UTC), ["handoff"])
    box.send(X, datetime(2026, 4, 20, tzinfo=UTC), ["handoff"])
    f = flag(box.audit(tmp_path), "x@example.com", "no_thanks", "them")
    assert f["detail"] == "no thank-you within 14 days for your introduction on 20 Apr (2 times since 10 Mar)"
    assert len(f["evidence"]) == 2


# no_follow_up --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("after", "hit"), [(14 * D, False), (14 * D + S, True), (None, True)])
def test_no_follow_up_on_my_introduction(tmp_path, after, hit):
    box = Box()
    intro = box.send(X, ago(40), ["handoff"], cc=[Y])
    box.mail(Y, [X, box.me], ago(39), reply_to=intro)  # Y followed up
    if after is not None:
        box.mail(X, [Y], ago(40) + after, reply_to=intro, extra={"Cc": box.me})
    rel = box.audit(tmp_path)
    assert (("no_follow_up", "them") in flags(rel, "x@example.com")) is hit
    assert ("no_follow_up", "them") not in flags(rel, "y@example.com")


def test_no_follow_up_only_counts_mail_in_that_thread(tmp_path):
    box = Box()
    box.send(X, ago(40), ["handoff"], cc=[Y])
    box.receive(X, ago(39))  # another thread
    f = flag(box.audit(tmp_path), "x@example.com", "no_follow_up", "them")
    assert f["detail"] == "did not follow up within 14 days on your introduction to Yuri Tan on 22 Apr"


def test_no_follow_up_needs_a_third_person_on_the_message(tmp_path):
    box = Box()
    box.send(X, ago(40), ["handoff"])  # a referral by name only: nobody to follow up with on the thread
    assert ("no_follow_up", "them") not in flags(box.audit(tmp_path), "x@example.com")


@pytest.mark.parametrize(("after", "hit"), [(14 * D, False), (14 * D + S, True)])
def test_no_follow_up_by_me_on_their_introduction(tmp_path, after, hit):
    box = Box()
    intro = box.receive(X, ago(40), ["handoff"], cc=[Y])
    box.mail(box.me, [Y], ago(40) + after, reply_to=intro)  # to Y only, in that thread
    rel = box.audit(tmp_path)
    assert (("no_follow_up", "me") in flags(rel, "x@example.com")) is hit


# ignored_reciprocal --------------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["them", "me"])
@pytest.mark.parametrize(("after", "hit"), [(14 * D, False), (14 * D + S, True), (None, True)])
def test_ignored_reciprocal(tmp_path, by, after, hit):
    box = Box()
    offered = ago(40)
    (box.send if by == "them" else box.receive)(X, offered, ["reciprocal_ask"])
    if after is not None:
        (box.receive if by == "them" else box.send)(X, offered + after)  # anything, any thread
    rel = box.audit(tmp_path)
    assert (("ignored_reciprocal", by) in flags(rel, "x@example.com")) is hit


def test_ignored_reciprocal_detail(tmp_path):
    box = Box()
    box.receive(X, datetime(2026, 4, 2, 15, tzinfo=UTC), ["reciprocal_ask"])
    f = flag(box.audit(tmp_path), "x@example.com", "ignored_reciprocal", "me")
    assert f["detail"] == "you did not answer their offer of help of 2 Apr within 14 days"


# never_offers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["them", "me"])
@pytest.mark.parametrize(("asks", "offers", "hit"), [(3, 0, True), (2, 0, False), (3, 1, False)])
def test_never_offers(tmp_path, by, asks, offers, hit):
    box = Box()
    ask_burst(box, by, [ago(80 - 10 * k) for k in range(asks)])
    send = box.receive if by == "them" else box.send
    for _ in range(offers):
        send(X, ago(200), ["reciprocal_ask"])
    rel = box.audit(tmp_path)
    assert (("never_offers", by) in flags(rel, "x@example.com")) is hit


def test_never_offers_detail(tmp_path):
    box = Box()
    ask_burst(box, "them", [datetime(2026, 1, 5, tzinfo=UTC), ago(60), ago(30)])
    f = flag(box.audit(tmp_path), "x@example.com", "never_offers", "them")
    assert f["detail"] == "asked you for 3 introductions since 5 Jan and never offered help in return"


# stranger_handoff ----------------------------------------------------------------------------------------


def history(box: Box, mine: int, theirs: int, who: str = X) -> None:
    for k in range(mine):
        box.send(who, ago(200 + k))
    for k in range(theirs):
        box.receive(who, ago(300 + k))


@pytest.mark.parametrize("by", ["them", "me"])
@pytest.mark.parametrize(("mine", "theirs", "hit"), [(0, 0, True), (1, 0, True), (0, 3, True), (1, 1, False)])
def test_stranger_handoff_without_two_way_history(tmp_path, by, mine, theirs, hit):
    box = Box()
    history(box, mine, theirs)
    if by == "them":
        box.receive(X, ago(10), ["handoff"], cc=[Y])
    else:
        box.send([X, Y], ago(10), ["handoff"])
    rel = box.audit(tmp_path)
    assert (("stranger_handoff", by) in flags(rel, "x@example.com")) is hit


@pytest.mark.parametrize("by", ["them", "me"])
@pytest.mark.parametrize(("others", "prior", "hit"), [(3, 2, True), (3, 3, False), (2, 2, False)])
def test_stranger_handoff_to_many_with_thin_history(tmp_path, by, others, prior, hit):
    box = Box()
    history(box, prior, prior)
    copied = [C1, C2, C3][:others]
    if by == "them":
        box.receive(X, ago(10), ["handoff"], cc=copied)
    else:
        box.send([X, *copied], ago(10), ["handoff"])
    rel = box.audit(tmp_path)
    assert (("stranger_handoff", by) in flags(rel, "x@example.com")) is hit


def test_stranger_handoff_details(tmp_path):
    box = Box()
    history(box, 2, 2)
    box.receive(X, datetime(2026, 5, 3, tzinfo=UTC), ["handoff"], cc=[C1, C2, C3])
    box.send(Z, datetime(2026, 5, 4, tzinfo=UTC), ["handoff"])
    rel = box.audit(tmp_path)
    assert flag(rel, "x@example.com", "stranger_handoff", "them")["detail"] == (
        "introduced someone to you on 3 May copying 3 other people, with only 2 earlier messages from you "
        "and 2 from them"
    )
    assert flag(rel, "z@example.com", "stranger_handoff", "me")["detail"] == (
        "you introduced someone to them on 4 May with no two-way history between you"
    )


# every flag at once, each in its own direction -------------------------------------------------------------


def test_flags_are_per_direction_and_do_not_leak_to_the_other(tmp_path):
    box = Box()
    ask_burst(box, "them", [ago(30), ago(30) + H, ago(30) + 2 * H])
    rel = box.audit(tmp_path)
    found = flags(rel, "x@example.com")
    assert ("glomming", "them") in found and not any(by == "me" for _, by in found)
    assert rel.flags["contact"].tolist().count("x@example.com") == len(found)  # one row per flag and direction


def test_config_thresholds_are_used(tmp_path):
    box = Box()
    ask_burst(box, "them", [ago(30), ago(30) + H])
    rel = box.audit(tmp_path, config(glomming_burst_asks=2))
    assert ("glomming", "them") in flags(rel, "x@example.com")
    assert rel.as_of == AS_OF


def test_read_frame_matches_read_sql_and_shares_repeated_text():
    """frames.read_frame: the frame pd.read_sql gives, read in chunks, one object per distinct shared value."""
    import sqlite3

    import pandas as pd

    from mailaudit.frames import read_frame

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE r (message INTEGER, addr TEXT, kind TEXT, n INTEGER)")
    rows = [(i, f"p{i % 7}@example.org", "to" if i % 3 else "cc", None if i % 5 == 0 else i) for i in range(250)]
    conn.executemany("INSERT INTO r VALUES (?,?,?,?)", rows)
    sql = "SELECT message, addr, kind, n FROM r ORDER BY message"
    got = read_frame(conn, sql, shared=("addr", "kind"), chunk=60)
    pd.testing.assert_frame_equal(got, pd.read_sql_query(sql, conn), check_dtype=False)
    assert got["n"].dtype == "float64" and got["message"].dtype == "int64"
    assert len({id(a) for a in got["addr"]}) == 7 and len({id(k) for k in got["kind"]}) == 2
    assert list(read_frame(conn, "SELECT addr FROM r WHERE 0", shared=("addr",)).columns) == ["addr"]
