"""Gmail-only behaviour at the boundary where server responses are parsed: X-GM-* attributes and \\All.

Dovecot cannot serve these, so the responses below are shaped exactly as Gmail documents them
(developers.google.com/gmail/imap/imap-extensions, RFC 6154 for the flags) and go through imapclient's own
response parsers, then through ours and into a real store.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from imapclient import IMAPClient
from imapclient.response_parser import parse_fetch_response

from mailaudit.config import ParseConfig
from mailaudit.imap_sync import GMAIL_EXT, MissingFolders, gmail_labels, message_from_fetch, plan_folders
from mailaudit.ingest import import_paths, settle
from mailaudit.store import save_source
from mailaudit.sync import parse_fetched
from mailaudit.syncstore import save_imap_batch

from mailgen import write_mbox

GMAIL_CAPS = frozenset({b"IMAP4REV1", b"UNSELECT", b"IDLE", b"NAMESPACE", b"QUOTA", b"ID", b"XLIST", b"CHILDREN",
                        GMAIL_EXT, b"UIDPLUS", b"COMPRESS=DEFLATE", b"ENABLE", b"MOVE", b"CONDSTORE", b"ESEARCH",
                        b"UTF8=ACCEPT", b"LIST-EXTENDED", b"LIST-STATUS", b"LITERAL-", b"SPECIAL-USE",
                        b"APPENDLIMIT=35651584"})

# LIST "" "*" as Gmail answers it (English, then a German account where the names are localised)
GMAIL_LIST = [
    b'(\\HasNoChildren) "/" "INBOX"',
    b'(\\HasChildren \\Noselect) "/" "[Gmail]"',
    b'(\\All \\HasNoChildren) "/" "[Gmail]/All Mail"',
    b'(\\Drafts \\HasNoChildren) "/" "[Gmail]/Drafts"',
    b'(\\HasNoChildren \\Important) "/" "[Gmail]/Important"',
    b'(\\HasNoChildren \\Sent) "/" "[Gmail]/Sent Mail"',
    b'(\\HasNoChildren \\Junk) "/" "[Gmail]/Spam"',
    b'(\\Flagged \\HasNoChildren) "/" "[Gmail]/Starred"',
    b'(\\HasNoChildren \\Trash) "/" "[Gmail]/Trash"',
    b'(\\HasNoChildren) "/" "Work"',
]
GMAIL_LIST_DE = [
    b'(\\HasNoChildren) "/" "INBOX"',
    b'(\\HasChildren \\Noselect) "/" "[Google Mail]"',
    b'(\\All \\HasNoChildren) "/" "[Google Mail]/Alle Nachrichten"',
    b'(\\HasNoChildren \\Sent) "/" "[Google Mail]/Gesendet"',
    b'(\\HasNoChildren \\Junk) "/" "[Google Mail]/Spam"',
    b'(\\HasNoChildren \\Trash) "/" "[Google Mail]/Papierkorb"',
    b'(\\HasNoChildren) "/" "Entw&APw-rfe"',
]


def parse_list(lines: list[bytes]) -> list[tuple[tuple[bytes, ...], bytes, str]]:
    """imapclient's own LIST parsing (what IMAPClient.list_folders returns), without a connection."""
    return IMAPClient._proc_folder_list(SimpleNamespace(folder_encode=True), lines)


def test_gmail_syncs_all_mail_found_by_its_flag_not_its_name():
    plans = plan_folders(parse_list(GMAIL_LIST), GMAIL_CAPS, ())
    assert [(p.name, p.gmail, p.sent) for p in plans] == [("[Gmail]/All Mail", True, False)]
    plans = plan_folders(parse_list(GMAIL_LIST_DE), GMAIL_CAPS, ())
    assert [p.name for p in plans] == ["[Google Mail]/Alle Nachrichten"]


def test_gmail_configured_folders_are_added_but_never_spam_or_trash():
    plans = plan_folders(parse_list(GMAIL_LIST), GMAIL_CAPS, ("Work", "[Gmail]/Spam", "[Gmail]/Trash"))
    assert [p.name for p in plans] == ["[Gmail]/All Mail", "Work"]
    plans = plan_folders(parse_list(GMAIL_LIST_DE), GMAIL_CAPS, ("Entwürfe", "[Google Mail]/Papierkorb"))
    assert [p.name for p in plans] == ["[Google Mail]/Alle Nachrichten", "Entwürfe"]
    with pytest.raises(MissingFolders, match="Archive"):
        plan_folders(parse_list(GMAIL_LIST), GMAIL_CAPS, ("Archive",))


def test_gmail_with_all_mail_hidden_from_imap_falls_back_to_inbox_and_sent():
    lines = [ln for ln in GMAIL_LIST if b"\\All" not in ln]
    plans = plan_folders(parse_list(lines), GMAIL_CAPS, ())
    assert [(p.name, p.sent, p.gmail) for p in plans] == [("INBOX", False, True), ("[Gmail]/Sent Mail", True, True)]


def test_other_servers_use_sent_flag_else_common_names():
    listing = parse_list([b'(\\HasNoChildren) "." "INBOX"', b'(\\HasNoChildren \\Sent) "." "INBOX.Outbox-Copies"'])
    plans = plan_folders(listing, {b"IMAP4REV1"}, ())
    assert [(p.name, p.sent, p.gmail) for p in plans] == [("INBOX", False, False), ("INBOX.Outbox-Copies", True, False)]
    listing = parse_list([b'(\\HasNoChildren) "/" "INBOX"', b'(\\HasNoChildren) "/" "Sent Items"'])
    assert [p.name for p in plan_folders(listing, {b"IMAP4REV1"}, ())] == ["INBOX", "Sent Items"]


def literal(prefix: bytes, data: bytes) -> tuple[bytes, bytes]:
    return (prefix + b" {%d}" % len(data), data)


HEADER_1 = (b"From: Ann Lee <ann@example.com>\r\nTo: Pat Morgan <pat@gmail.com>\r\nSubject: Budget\r\n"
            b"Date: Tue, 03 Mar 2026 09:00:00 +0000\r\nMessage-ID: <budget-1@example.com>\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
HEADER_2 = (b"From: Pat Morgan <pat@gmail.com>\r\nTo: Ann Lee <ann@example.com>\r\nSubject: Budget\r\n"
            b"Date: Tue, 03 Mar 2026 11:00:00 +0000\r\nMessage-ID: <budget-2@gmail.com>\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
HEADER_3 = (b"From: Spammer <win@prize.example>\r\nTo: Pat Morgan <pat@gmail.com>\r\nSubject: You won\r\n"
            b"Date: Tue, 03 Mar 2026 12:00:00 +0000\r\nMessage-ID: <x@prize.example>\r\n\r\n")


def gmail_fetch() -> list:
    """UID FETCH (X-GM-THRID X-GM-MSGID X-GM-LABELS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER]
    BODY.PEEK[TEXT]<0.65536>) as imaplib hands Gmail's answer to imapclient: literals split out."""
    text1, text2 = b"Can you send the numbers?\r\n", b"Sure, attached.\r\n\r\nPat\r\n"
    return [
        literal(b'1 (X-GM-THRID 1278455344230334865 X-GM-MSGID 1278455344230334865 X-GM-LABELS (\\Inbox '
                b'\\Important "Muy Importante" &AMQ-rger) UID 21 RFC822.SIZE %d INTERNALDATE "03-Mar-2026 09:00:01 '
                b'+0000" BODY[HEADER]' % (len(HEADER_1) + len(text1)), HEADER_1),
        literal(b" BODY[TEXT]<0>", text1), b")",
        # the second message of the thread; its header has no References: only Gmail knows it belongs
        literal(b'2 (X-GM-THRID 1278455344230334865 X-GM-MSGID 1278455344230334999 X-GM-LABELS (\\Sent) UID 22 '
                b'RFC822.SIZE 5000000 INTERNALDATE "03-Mar-2026 11:00:02 +0000" BODY[HEADER]', HEADER_2),
        literal(b" BODY[TEXT]<0>", text2), b")",
        literal(b'3 (X-GM-THRID 1300000000000000001 X-GM-MSGID 1300000000000000001 X-GM-LABELS (\\Trash) UID 23 '
                b'RFC822.SIZE %d INTERNALDATE "03-Mar-2026 12:00:00 +0000" BODY[HEADER]' % len(HEADER_3), HEADER_3),
        literal(b" BODY[TEXT]<0>", b""), b")",
    ]


def test_gmail_fetch_response_yields_ids_labels_and_sent():
    parsed = parse_fetch_response(gmail_fetch(), normalise_times=False, uid_is_key=True)
    msgs = [message_from_fetch(uid, data) for uid, data in sorted(parsed.items())]
    m1, m2, m3 = msgs
    assert (m1.uid, m1.gm_thrid, m1.gm_msgid) == (21, "1278455344230334865", "1278455344230334865")
    assert m1.gm_labels == ["Inbox", "Important", "Muy Importante", "Ärger"]  # modified UTF-7 decoded
    assert not m1.sent and not m1.truncated and m1.internal_ts == 1772528401
    assert m2.sent and m2.truncated and m2.size == 5_000_000  # only a prefix of a 5 MB message came
    assert m3.spam_or_trash


def test_gmail_labels_as_documented():
    # * 1 FETCH (X-GM-LABELS (\Inbox \Sent Important "Muy Importante")) ... (foo) ... () ... (\Drafts)
    rows = [b"1 (X-GM-LABELS (\\Inbox \\Sent Important \"Muy Importante\"))", b"2 (X-GM-LABELS (foo))",
            b"3 (X-GM-LABELS ())", b"4 (X-GM-LABELS (\\Drafts))", b"5 (X-GM-LABELS (2024 \"&ZeVnLIqe-\"))"]
    parsed = parse_fetch_response(rows, uid_is_key=False)
    labels = {seq: gmail_labels(d[b"X-GM-LABELS"]) for seq, d in parsed.items()}
    assert labels == {1: ["Inbox", "Sent", "Important", "Muy Importante"], 2: ["foo"], 3: [], 4: ["Drafts"],
                      5: ["2024", "日本語"]}


def test_gmail_messages_are_stored_with_thread_and_message_ids(tmp_path, conn, cfg):
    # the first message was already imported from a Takeout export, without Gmail's message id
    write_mbox(tmp_path / "takeout.mbox", [HEADER_1 + b"Can you send the numbers?\r\n"])
    import_paths(conn, [str(tmp_path / "takeout.mbox")], cfg)
    parsed = parse_fetch_response(gmail_fetch(), normalise_times=False)
    msgs = [message_from_fetch(uid, data) for uid, data in sorted(parsed.items())]
    pms = parse_fetched(msgs, ParseConfig())
    src = save_source(conn, "imap:gmail/[Gmail]/All Mail", "imap", "imap://gmail/[Gmail]/All Mail",
                      "[Gmail]/All Mail", False, None, None)
    items = [(str(m.uid), None if m.spam_or_trash else pm, m.sent, m.gm_msgid) for m, pm in zip(msgs, pms, strict=True)]
    res = save_imap_batch(conn, src.id, "gmail", "[Gmail]/All Mail", 7, items, 23)
    assert (res.new, res.duplicates, res.skipped) == (1, 1, 1)
    settle(conn, cfg)
    rows = conn.execute("SELECT message_id, gm_thrid, gm_msgid, labels, direction, size, thread_id FROM messages "
                        "ORDER BY id").fetchall()
    (id1, thr1, gm1, _lab1, dir1, _s1, t1), (id2, thr2, gm2, lab2, dir2, size2, t2) = rows
    assert (id1, thr1, gm1, dir1) == ("budget-1@example.com", "1278455344230334865", "1278455344230334865",
                                      "received")
    assert (id2, thr2, gm2, lab2, dir2, size2) == ("budget-2@gmail.com", "1278455344230334865",
                                                  "1278455344230334999", "Sent", "sent", 5_000_000)
    assert t1 == t2  # one thread, by Gmail's thread id
    assert conn.execute("SELECT last_uid, uidvalidity FROM imap_folders").fetchone() == (23, 7)
    assert not conn.execute("SELECT count(*) FROM messages WHERE message_id='x@prize.example'").fetchone()[0]


def test_capability_without_gmail_extension_fetches_no_gmail_attributes():
    plans = plan_folders(parse_list(GMAIL_LIST), {b"IMAP4REV1", b"SPECIAL-USE"}, ())
    assert all(not p.gmail for p in plans) and [p.name for p in plans] == ["INBOX", "[Gmail]/Sent Mail"]
