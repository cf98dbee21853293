"""The ONLY producer of model input: one row per message, the same for training and prediction."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, repeat

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

TEXT_MAX = 3000

# Cue families written from LABELS.md: phrases that carry an act whatever the topic, so they generalise
# from few real examples better than n-grams do. Each is counted on the lower-cased own text (faster than
# IGNORECASE), except the three that need capitals to see a person's name.
_CUES: dict[str, re.Pattern[str]] = {
    # intro_request: asking to be connected with, or to be given, other people
    "cue_ask_intro": re.compile(
        r"(?<!\w)(?:introduce me|an? (?:intro|introduction) to|put (?:me|us) in (?:touch|contact)|"
        r"(?:connect|hook) (?:me|us) (?:up )?with|(?:pass|forward|send|give) (?:my|our|his|her) (?:resume|cv)|"
        r"refer (?:me|us) to|point (?:me|us) (?:to|toward)|who (?:should|could|can|would) (?:i|we) "
        r"(?:talk|speak|contact|call|work|get in touch)|who (?:is|would be|should be) (?:the|your|our) "
        r"(?:right |best |appropriate )?(?:contact|person|reviewer)|(?:any|a) contacts? (?:at|in|with)|"
        r"(?:your|a|the) contact (?:at|in) |(?:name|names) and (?:phone )?numbers?|contact (?:name|person|info)|"
        r"anyone (?:at|in|who|that) |anybody (?:at|in|who|that) |someone (?:at|in|who|that) (?:could|can|would|might)|"
        r"know (?:of )?(?:anyone|anybody|someone|somebody)|designate (?:your|a) )"),
    "cue_ask_q": re.compile(
        r"(?<!\w)(?:do|would|could|can|will) you "
        r"(?:know|introduce|recommend|suggest|refer|put|pass|forward|connect)\b"),
    # handoff: passing a person on to someone else
    "cue_meet": re.compile(
        r"(?<!\w)(?:(?:like|want|wanted) you (?:two |both )?to (?:meet|talk|speak|connect)|meet [A-Z][a-z]+|"
        r"introduc(?:e|ing) (?:you|him|her|them) to|let me introduce|you two should|"
        r"this is to introduce|i'?m (?:cc'?ing|copying) [A-Z][a-z]+)"),
    "cue_refer": re.compile(
        r"(?<!\w)(?:(?:please )?(?:contact|call|e-?mail|get in touch with|talk to|speak (?:to|with)|reach out to) "
        r"[A-Z][a-z]+(?: [A-Z][a-z]+)?|give [A-Z][a-z]+ a call|(?:he|she) (?:can|could|will|should be able to) "
        r"help|(?:he|she) is (?:the|a) (?:right|best|good) (?:person|contact)|(?:reach|call) (?:him|her) at|"
        r"(?:his|her) (?:phone|number|cell|e-?mail|contact)|(?:start|begin) with [A-Z][a-z]+)"),
    "cue_candidate": re.compile(
        r"(?<!\w)(?:[A-Z][a-z]+'s (?:resume|cv)|resume of|(?:forward|attach|send|pass)\w* (?:\w+ ){0,3}(?:resume|cv)|"
        r"candidate|(?:is|was|are) (?:looking|interested in) (?:for )?(?:a |an )?(?:job|position|role|opportunit)|"
        r"would (?:be|make) a (?:great|good|strong) (?:addition|fit|candidate))"),
    # thank_you: gratitude for something received, versus sign-offs and thanks in advance
    "cue_thanks_for": re.compile(
        r"(?<!\w)(?:thanks|thank you|thanx|thx|many thanks|appreciate[ds]?|grateful)\b(?:[^.!?\n]{0,30})?\b"
        r"(?:for|that you)\b"),
    "cue_thanks_any": re.compile(r"(?<!\w)(?:thanks|thank you|thank u|thanx|thx|appreciated?|grateful|gracias)\b"),
    "cue_thanks_advance": re.compile(
        r"(?<!\w)(?:in advance|advance thanks|thanks? (?:you )?ahead|appreciate (?:any|your) (?:help|assistance|input)"
        r"(?: (?:on|with|in) (?:this|these))?\.? *$|would (?:be|really be) (?:greatly |much )?appreciated)", re.M),
    "cue_thanks_mass": re.compile(
        r"(?<!\w)thank you for (?:your|the) (?:patience|purchase|business|interest|order|cooperation|attention|"
        r"participation|understanding|support in this|continued)|thank you for (?:choosing|using|shopping|"
        r"subscribing|submitting)"),
    "cue_thanks_time": re.compile(
        r"(?<!\w)(?:taking the time|for your time|for (?:all )?your help|for the (?:introduction|intro|referral|"
        r"recommendation|lunch|dinner|gift|note|info|information|call|update)|for (?:meeting|talking|"
        r"speaking|getting back)|owe you|you'?re the best|much appreciated|really appreciate|"
        r"appreciate (?:it|you|your|all))"),
    # reciprocal_ask: offering help back
    "cue_offer": re.compile(
        r"(?<!\w)(?:(?:if|whenever|when) (?:i|we) can (?:ever )?(?:be of )?(?:any |some |further )?"
        r"(?:help|assist|assistance|service)|let (?:me|us) know (?:if|how|what|when) (?:i|we) can "
        r"(?:help|do|be of|assist|return)|(?:anything|something) (?:that )?(?:i|we) (?:can|could|might) "
        r"(?:do|help)|return the favou?r|how can (?:i|we) help|(?:happy|glad|willing) to help|"
        r"(?:if|should) you (?:ever )?need (?:anything|any help|help|a hand)|don'?t hesitate to (?:call|contact|"
        r"ask)|it'?s on me|(?:call|ask) me (?:if|any ?time|whenever)|let me know if (?:you|there is|there's) "
        r"(?:need )?anything|(?:may|can) be of (?:any |further )?(?:help|assistance))"),
    "cue_more_info": re.compile(
        r"(?<!\w)(?:(?:if|should) you have (?:any )?(?:further |additional |other )?questions|"
        r"anything (?:else|further|futher)|further (?:information|assistance|questions)|"
        r"need (?:anything|any) (?:else|further|more))"),
    "cue_sent_doc": re.compile(
        r"(?<!\w)(?:attached|attachment|enclosed|here is|here are|here's|as requested|below)\b"),
    "cue_request": re.compile(
        r"(?:\bplease\b|\b(?:could|can|would|will) you\b|\blet me know\b|\bi need\b|\?)"),
}
CUES = list(_CUES)
# A family is only searched when one of its keywords occurs in the lower-cased text (a substring test is
# far cheaper than a regex scan, and most mail carries no cue at all).
_KEYS: dict[str, tuple[str, ...]] = {
    "cue_ask_intro": ("intro", "touch", "contact", "connect", "hook", "resume", "cv", "refer", "point", "who ",
                      "any", "some", "name", "designate"),
    "cue_ask_q": (" you ",),
    "cue_meet": ("meet", "introduc", "two should", "cc", "copying"),
    "cue_refer": ("contact", "call", "mail", "touch", "talk", "speak", "reach", " he ", "she ", "his ", "her ",
                  "start", "begin"),
    "cue_candidate": ("resume", " cv", "candidate", "looking", "interested", "addition", "fit"),
    "cue_thanks_for": ("than", "thx", "apprec", "grate"),
    "cue_thanks_any": ("than", "thx", "apprec", "grate", "gracias"),
    "cue_thanks_advance": ("advance", "ahead", "apprec"),
    "cue_thanks_mass": ("thank you for",),
    "cue_thanks_time": ("time", "help", "for the", "for meeting", "for talking", "for speaking", "for getting",
                        "owe", "best", "apprec"),
    "cue_offer": ("help", "assist", "service", "anything", "something", "favo", "hesitate", "on me", "call me",
                  "ask me", "need"),
    "cue_more_info": ("question", "anything", "further", "need"),
    "cue_sent_doc": ("attach", "enclosed", "here", "requested", "below"),
}
_CASED = {"cue_meet", "cue_refer", "cue_candidate"}  # these need capitals to see a person's name
_PLAN = [(p, _KEYS[k], k in _CASED) for k, p in _CUES.items() if k != "cue_request"]
_REQUEST_WORDS = ("please", "could you", "can you", "would you", "will you", "let me know", "i need", "?")
NUMERIC = [
    "is_sent", "is_reply", "is_forward", "thread_pos", "n_to", "n_cc", "n_questions", "n_names",
    "resume", "n_words", "own_empty", "thanks_first", *CUES, "thanks_signoff", "thanks_only", "thanks_with_request",
    "offer_last", "ask_in_question",
]
COLUMNS = ["text", "subject", *NUMERIC]

# A capital first, then the two lookbehinds: tried at every position they took 0.36 of the 2.3 s features
# spend on 20,000 messages; this finds the same names (24,955 corpus texts compared) in half the time
_NAME = re.compile(r"\b(?=[A-Z])(?<![.!?]\s)(?<!^)[A-Z][a-z]{1,15}(?:\s[A-Z][a-z]{1,20})\b")
_RESUME = re.compile(r"(?<!\w)(?:resume|résumé|cv|curriculum vitae|lebenslauf)\b", re.IGNORECASE)
_RESUME_LOW = re.compile(r"(?<!\w)(?:resume|résumé|cv|curriculum vitae|lebenslauf)\b")
_THANKS_FIRST = re.compile(r"^\W*(?:\w+\W+){0,3}(?:thanks|thank you|thx|appreciate|grateful)", re.IGNORECASE)
_SIGNOFF = re.compile(r"^\W*(?:thanks|thank you|thanx|thx|many thanks|thanks again|ty)\W*(?:[a-z]+\W*){0,2}$")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_THANKS = _CUES["cue_thanks_any"]
_OFFER = _CUES["cue_offer"]
_ASK = _CUES["cue_ask_intro"]
_REQUEST = _CUES["cue_request"]
_THANKS_AT, _OFFER_AT, _ASK_AT = (CUES.index(k) for k in ("cue_thanks_any", "cue_offer", "cue_ask_intro"))


@dataclass(slots=True)
class MessageInput:
    """What the model may know of one message (the own text, never quoted material)."""

    own_text: str
    subject: str
    direction: str = "received"
    is_reply: bool = False
    is_forward: bool = False
    thread_pos: int = 0
    n_to: int = 1
    n_cc: int = 0
    attachment_names: str = ""


def build_features(rows: Iterable[MessageInput]) -> pd.DataFrame:
    """A DataFrame with exactly COLUMNS: bounded text, subject and the structural numbers."""
    records = [_row(r) for r in rows]
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def _row(r: MessageInput) -> tuple:
    text = (r.own_text or "")[:TEXT_MAX]
    low = text.lower()
    words = len(low.split())
    resume = bool(_RESUME.search(r.attachment_names or "") or _RESUME.search(r.subject or "")
                  or _RESUME_LOW.search(low))
    return (
        text,
        r.subject or "",
        float(r.direction == "sent"),
        float(r.is_reply),
        float(r.is_forward),
        math.log1p(min(r.thread_pos, 50)),
        math.log1p(r.n_to),
        math.log1p(r.n_cc),
        float(min(text.count("?"), 5)),
        math.log1p(len(_NAME.findall(text))),
        float(resume),
        math.log1p(words),
        float(words == 0),
        float(bool(_THANKS_FIRST.match(text))),
        *_cues(text, low, words),
    )


def _cues(text: str, low: str, words: int) -> list[float]:
    """Cue counts (capped), then where the thanks and offers sit: a lone closing line, the whole message,
    the same sentence as a request, the last lines."""
    if not text:
        return [0.0] * (len(CUES) + 5)
    counts = [float(min(len(p.findall(text if cased else low)), 3)) if any(k in low for k in keys) else 0.0
              for p, keys, cased in _PLAN]
    counts.append(float(min(sum(low.count(w) for w in _REQUEST_WORDS), 3)))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    tail = lines[-3:]
    signoff = any(_SIGNOFF.match(ln.lower()) for ln in tail) and len(lines) > 1
    thanks_only = words <= 8 and bool(counts[_THANKS_AT])
    with_request = 0
    if counts[_THANKS_AT]:
        with_request = sum(1 for s in _SENTENCE.findall(low) if _THANKS.search(s) and _REQUEST.search(s))
    offer_last = bool(counts[_OFFER_AT]) and bool(_OFFER.search("\n".join(tail).lower()))
    ask_q = bool(counts[_ASK_AT]) and "?" in text and any(
        _ASK.search(s) for s in _SENTENCE.findall(low) if s.rstrip().endswith("?"))
    return [*counts, float(signoff), float(thanks_only), float(min(with_request, 3)), float(offer_last), float(ask_q)]


# Term lists are saved as one newline-joined string, not a dict: skops writes a dict entry by entry, and the
# ~48,000 entries of the model's four vocabularies were most of the 1.4 s a model took to load. Terms hold
# no newline: tokens are \w runs, char n-grams come from whitespace-split words.
def pack_terms(terms: Iterable[str]) -> str:
    return "\n".join(terms)


def _lookup(model: BaseEstimator, legacy: str, packed: str) -> dict[str, int]:
    """Term -> index: the dict itself in models saved before packing (attribute `legacy`), else the packed
    list `packed` turned into one on first use and kept out of the saved state."""
    if legacy in model.__dict__:
        return model.__dict__[legacy]
    cache = model.__dict__.setdefault("_lookup_cache", {})
    if packed not in cache:
        terms = model.__dict__[packed]
        cache[packed] = {t: i for i, t in enumerate(terms.split("\n"))} if terms else {}
    return cache[packed]


class _PackedTerms:
    """Leaves the lookup cache out of what pickle and skops save."""

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # type: ignore[misc]
        state.pop("_lookup_cache", None)
        return state


class CharNgrams(_PackedTerms, TransformerMixin, BaseEstimator):
    """Tf-idf of char_wb 3-5-grams (as TfidfVectorizer(analyzer="char_wb", sublinear_tf=True) computes it),
    summed per word: a message's n-grams are those of its words, so each distinct word is looked up once
    and a batch is one sparse product instead of a dictionary lookup per n-gram."""

    def __init__(self, min_df: int = 3, max_features: int | None = 20000) -> None:
        self.min_df = min_df
        self.max_features = max_features

    def fit(self, X: pd.Series, y: object = None) -> CharNgrams:
        vec = TfidfVectorizer(analyzer=char_wb_ngrams, min_df=self.min_df, max_features=self.max_features,
                              sublinear_tf=True, dtype=np.float32).fit(_texts(X))
        self.terms_ = pack_terms(sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__))  # column order
        self.idf_ = vec.idf_.astype(np.float32)
        return self

    @property
    def vocabulary_(self) -> dict[str, int]:
        """n-gram -> column."""
        return _lookup(self, "vocabulary_", "terms_")

    def transform(self, X: pd.Series) -> sp.csr_matrix:
        per_doc = [text.lower().split() for text in _texts(X)]
        if not per_doc:
            return sp.csr_matrix((0, len(self.idf_)), dtype=np.float32)
        types = dict.fromkeys(chain.from_iterable(per_doc))  # distinct words, in order, deduplicated in C
        index = {w: i for i, w in enumerate(types)}
        cols = list(map(index.__getitem__, chain.from_iterable(per_doc)))
        rows = np.repeat(np.arange(len(per_doc)), np.array([len(words) for words in per_doc], dtype=np.int64))
        docs = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(per_doc), len(types)))
        vocab, indptr, indices = self.vocabulary_, [0], []
        for word in types:
            indices.extend(i for g in _word_ngrams(word) if (i := vocab.get(g)) is not None)
            indptr.append(len(indices))
        words = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                              shape=(len(types), len(self.idf_)))
        counts = (docs @ words).tocsr()  # a sparse product has one entry per (doc, n-gram): no duplicates
        return _sublinear_tfidf(counts, self.idf_)


class WordNgrams(_PackedTerms, TransformerMixin, BaseEstimator):
    """Tf-idf of word 1-2-grams, exactly as TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True) computes
    it, but looked up in bulk: each token is mapped to an id once, and bigrams are found by a sorted search
    over id pairs, instead of building and hashing every 'word word' string (most of prediction time)."""

    def __init__(self, min_df: int = 2, max_features: int | None = None) -> None:
        self.min_df = min_df
        self.max_features = max_features

    def fit(self, X: pd.Series, y: object = None) -> WordNgrams:
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=self.min_df, max_features=self.max_features,
                              sublinear_tf=True, dtype=np.float32).fit(_texts(X))
        tokens: dict[str, int] = {}
        uni: list[tuple[int, int]] = []
        bi: list[tuple[int, int, int]] = []
        for term, col in vec.vocabulary_.items():
            parts = [tokens.setdefault(t, len(tokens)) for t in term.split(" ")]
            if len(parts) == 1:
                uni.append((parts[0], int(col)))
            else:
                bi.append((parts[0], parts[1], int(col)))
        self.token_list_ = pack_terms(tokens)  # in id order
        self.unigram_col_ = np.full(len(tokens), -1, dtype=np.int64)
        for tok, col in uni:
            self.unigram_col_[tok] = col
        codes = np.array([a * len(tokens) + b for a, b, _ in bi], dtype=np.int64)
        order = np.argsort(codes)
        self.bigram_code_ = codes[order]
        self.bigram_col_ = np.array([c for _, _, c in bi], dtype=np.int64)[order]
        self.idf_ = vec.idf_.astype(np.float32)
        return self

    @property
    def tokens_(self) -> dict[str, int]:
        """token -> id."""
        return _lookup(self, "tokens_", "token_list_")

    def transform(self, X: pd.Series) -> sp.csr_matrix:
        get, unknown = self.tokens_.get, repeat(-1)
        per_doc = [list(map(get, _TOKEN.findall(text.lower()), unknown)) for text in _texts(X)]
        lengths = np.array([len(d) for d in per_doc], dtype=np.int64)
        ids = np.fromiter(chain.from_iterable(per_doc), dtype=np.int64, count=int(lengths.sum()))
        return self.transform_ids(ids, np.repeat(np.arange(len(per_doc), dtype=np.int64), lengths), len(per_doc))

    def transform_ids(self, ids: np.ndarray, doc: np.ndarray, n_docs: int) -> sp.csr_matrix:
        """The rows for token ids (tokens_ values, -1 unknown) with the row of each: for callers that
        tokenise several documents in one pass (sentences.py)."""
        n_cols = len(self.idf_)
        known = ids >= 0
        uni_cols = np.full(len(ids), -1, dtype=np.int64)
        uni_cols[known] = self.unigram_col_[ids[known]]
        keep_uni = uni_cols >= 0
        rows, cols = [doc[keep_uni]], [uni_cols[keep_uni]]
        if len(ids) > 1 and len(self.bigram_code_):
            a, b = ids[:-1], ids[1:]
            pair = (doc[:-1] == doc[1:]) & (a >= 0) & (b >= 0)
            codes = a[pair] * len(self.tokens_) + b[pair]
            at = np.searchsorted(self.bigram_code_, codes).clip(max=len(self.bigram_code_) - 1)
            hit = self.bigram_code_[at] == codes
            rows.append(doc[:-1][pair][hit])
            cols.append(self.bigram_col_[at[hit]])
        r, c = np.concatenate(rows), np.concatenate(cols)
        counts = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n_docs, n_cols))
        counts.sum_duplicates()
        return _sublinear_tfidf(counts, self.idf_)


def _sublinear_tfidf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Summed term counts -> TfidfVectorizer(sublinear_tf=True)'s rows: (1 + log tf) * idf, l2-normalised."""
    np.log(counts.data, out=counts.data)
    counts.data += 1.0
    return normalize(counts @ sp.diags(idf), copy=False).astype(np.float32)


_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # TfidfVectorizer's default token_pattern


def _texts(X: pd.Series | pd.DataFrame | list[str]) -> list[str]:
    if isinstance(X, pd.DataFrame):
        X = X.iloc[:, 0]
    return list(X)


def char_wb_ngrams(text: str) -> list[str]:
    """The char_wb 3-5-grams of scikit-learn's TfidfVectorizer (lower-cased, each word padded with spaces),
    built from a per-word cache: mail repeats its words, and the n-grams were most of prediction time."""
    out: list[str] = []
    for word in text.lower().split():
        out.extend(_word_ngrams(word))
    return out



@lru_cache(maxsize=200_000)
def _word_ngrams(word: str) -> tuple[str, ...]:
    w = f" {word} "
    size = len(w)
    grams: list[str] = []
    for n in range(3, 6):
        if n > size:
            break
        grams.extend(w[i : i + n] for i in range(size - n + 1))
    return tuple(grams)
