"""Opt-out, opt-in and help keywords in inbound SMS, in English, Dutch, French and Spanish.

The rule
--------
A message is a keyword message when its normalised words (see `normalise`) start with a
keyword, optionally after one polite phrase ("please stop", "svp arrêt"), and then either
nothing follows, or at most 3 more words follow, a polite phrase such as "thank you" or "s'il
vous plaît" counting as one word ("stop please", "Stop. Thank you", "stop it now", "Unsubscribe
me please", "cancel my appointment"), or the first sentence of the original text (up to the
first . ! ? … ¡ ¿ or line break) holds nothing but that keyword and polite phrases ("STOP. I
never signed up for this and I want no more messages"). Multi-word keywords match as a word
sequence ("OPT OUT", "opt-out", "STOP ALL"), their glued forms are keywords of their own
("OPTOUT", "STOPALL"), and the longest keyword that satisfies the rule wins. Case, accents,
punctuation, emoji and surrounding whitespace never matter ("  sToP  ", "STOP!!!", "Stop 🛑",
"arrêt" = "ARRET"), but the words must be exact: inflections ("stopping", "cancelled",
"helpful"), misspellings ("Stopp"), spaced-out letters ("S T O P") and keywords that do not
lead the message ("don't stop", "I need help", "Can you stop by tomorrow?") are ordinary text,
and so is a keyword followed by 4 or more words in the same sentence ("Start the meeting at 5
please", "Stop sending me messages please").

Decisions on the ambiguous cases
--------------------------------
* Up to 3 trailing words is a trade-off: it catches the polite and angry forms people really
  send ("stop it now", "Unsubscribe me please", "stop merci"), at the price of a few false
  positives such as "cancel my appointment" or "stop by at 5" being opt-outs. Carriers treat a
  leading CANCEL/STOP the same way, and for opt-out a false positive (one extra confirmation,
  the sender can reply START) is far cheaper than a missed opt-out (a regulatory problem). A
  deployment where CANCEL is part of ordinary conversation can pass its own packs.
  The other side of the trade-off: "Stop sending me messages please" (4 words, no sentence
  break) is not a keyword message; the inbound handler still relays it to the application.
* The first-sentence rule exists for the same reason: "STOP. I never signed up for this..." is
  unambiguous, while "Stop by tomorrow at 5 if you can" (no sentence break) is not. It accepts
  only the keyword and polite phrases in that sentence ("Stop please! Who gave you my
  number?"), not any 3 words, so "Start the car. Then drive to the shop" stays ordinary text.
* One leading polite phrase is skipped ("please stop", "pls unsubscribe"): it is a clear request,
  and being strict about opt-out argues for honouring it. Only one: "please please stop" is not
  a keyword message; neither is any other leading word ("don't stop", "The end").
* YES is not an opt-in (it is an ordinary conversational answer), and neither are the French
  COMMENCER or Spanish COMENZAR: they are verbs used in ordinary sentences, and a false opt-in
  re-subscribes someone who did not ask. The French seed page tells users to reply START.
* No fuzzy matching: "Stopp" (a misspelling, or Norwegian/German) and "S T O P" are not
  keywords; a letter-by-letter or edit-distance match would also hit ordinary words.

Language of a match
-------------------
Each built-in pack lists its keywords as written in that language. A keyword listed by one pack
only belongs to that language (ARRÊT/ARRET -> fr, AYUDA -> es, AANMELDEN -> nl). A keyword listed
by several packs (STOP, START, INFO, ...) takes the language that the other words of the message
clearly point to, when they point to exactly one of those packs: a pack's polite words ("stop
merci" -> fr, "stop alsjeblieft" -> nl, "stop gracias" -> es) or a keyword only that pack lists
("STOP BAJA" -> es). Otherwise it takes ``default_language`` (when that pack lists the keyword),
else the first pack in order that lists it. Within one pack, spellings that normalise to the
same words share one canonical keyword: the first listed (French lists ARRET before ARRÊT, so
both report ``keyword="ARRET"``).

Where the lists come from
-------------------------
* STOP and START, and the default opt-out/opt-in replies in English, Dutch and French: the Azure
  Communication Services "SMS concepts" page in those languages. UNSTOP and the Spanish replies
  (the carrier's "MENSAJE DE RED" texts, quoted verbatim): the Spanish version of that page.
* English: the US carrier (CTIA) opt-out words STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT and
  the help words HELP and INFO; the FCC 2024 revocation words REVOKE and OPT OUT (with OPTOUT,
  OPT-OUT, STOP ALL as written variants); the usual aggregator opt-in words SUBSCRIBE, RESUME,
  OPTIN, OPT IN.
* French: ARRET and AIDE are the French words among the Canadian (CWTA) mandatory keywords
  (STOP, ARRET, HELP, AIDE, INFO), ARRÊT its accented spelling; STOP and START are what the
  French ACS page names; DESABONNER/DÉSINSCRIRE use the vocabulary of the ACS reply.
* Dutch and Spanish: STOP/START from the seed pages plus the words Dutch and Spanish-language
  programmes commonly use (STOPPEN, AFMELDEN, UITSCHRIJVEN, AANMELDEN, HULP; PARAR, ALTO,
  CANCELAR, BAJA, DAR DE BAJA, INICIO, AYUDA). No standards body lists these, so the lists are
  deliberately short; the polite phrases are everyday please/thank-you words.

This module is pure (no I/O, no Azure imports) so the inbound handler, the API and tests can
all use it. `KeywordEngine` precomputes its lookups, so `KeywordEngine.match` costs time linear
in the length of the message.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

__all__ = [
    "DEFAULT_PACKS",
    "DUTCH",
    "ENGLISH",
    "FRENCH",
    "MAX_TRAILING_WORDS",
    "SPANISH",
    "KeywordEngine",
    "KeywordKind",
    "KeywordMatch",
    "LanguagePack",
    "normalise",
]

KeywordKind = Literal["opt_out", "opt_in", "help"]

#: How many words may follow a keyword in the same message and it still counts (see the rule).
MAX_TRAILING_WORDS = 3

# Characters that end the first sentence for the first-sentence rule. The inverted Spanish marks
# open a new sentence, which ends the previous one just the same.
_SENTENCE_BREAK = re.compile("[.!?…¡¿\n\r\u2028\u2029\u3002\uff01\uff1f]")

_KINDS: tuple[KeywordKind, ...] = ("opt_out", "opt_in", "help")

Key = tuple[str, ...]


@dataclass(frozen=True)
class LanguagePack:
    """The keywords and default replies of one language.

    ``help_reply`` None means "reply with the configured help text (SMS_HELP_TEXT)", which is
    what a deployment normally wants: the help text names the programme, which a built-in pack
    cannot. ``polite`` holds the language's please/thank-you phrases: one of them may precede a
    keyword, and they tell which language a shared keyword such as STOP was written in.
    """

    language: str
    opt_out: tuple[str, ...]
    opt_in: tuple[str, ...]
    help: tuple[str, ...]
    opt_out_reply: str
    opt_in_reply: str
    help_reply: str | None = None
    polite: tuple[str, ...] = ()

    def keywords(self, kind: KeywordKind) -> tuple[str, ...]:
        """The keywords of one kind, as listed."""
        if kind == "opt_out":
            return self.opt_out
        if kind == "opt_in":
            return self.opt_in
        return self.help


ENGLISH = LanguagePack(
    language="en",
    opt_out=("STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
             "OPT OUT", "OPT-OUT", "REVOKE"),
    opt_in=("START", "UNSTOP", "SUBSCRIBE", "RESUME", "OPTIN", "OPT IN", "OPT-IN"),
    help=("HELP", "INFO"),
    opt_out_reply=("You have successfully been unsubscribed to messages from this number. "
                   "Reply START to resubscribe."),
    opt_in_reply=("You have successfully been re-subscribed to messages from this number. "
                  "Reply STOP to unsubscribe."),
    polite=("please", "pls", "plz", "kindly", "thanks", "thank you", "thx"),
)

DUTCH = LanguagePack(
    language="nl",
    opt_out=("STOP", "STOPPEN", "AFMELDEN", "UITSCHRIJVEN"),
    opt_in=("START", "AANMELDEN"),
    help=("HELP", "INFO", "HULP"),
    opt_out_reply=("U bent afgemeld voor berichten van dit nummer. "
                   "Antwoord met START om u opnieuw aan te melden."),
    opt_in_reply=("U bent aangemeld voor berichten van dit nummer. "
                  "Antwoord met STOP om u af te melden."),
    polite=("alsjeblieft", "alstublieft", "aub", "a u b", "bedankt", "dank je", "dank u",
            "dankjewel", "dankuwel"),
)

FRENCH = LanguagePack(
    language="fr",
    # ARRET before ARRÊT: the first spelling is the canonical keyword, and ASCII is what
    # carriers list and what ends up in the opt-out history.
    opt_out=("ARRET", "ARRÊT", "STOP", "DESABONNER", "DÉSABONNER", "DESINSCRIRE",
             "DÉSINSCRIRE"),
    opt_in=("START",),
    help=("AIDE", "INFO"),
    opt_out_reply=("Vous avez été correctement désabonné des messages de ce numéro. "
                   "Répondez START pour vous réabonner."),
    opt_in_reply=("Vous avez été correctement réabonné aux messages de ce numéro. "
                  "Répondez STOP pour vous désabonner."),
    polite=("merci", "svp", "stp", "s il vous plait", "s il te plait"),
)

SPANISH = LanguagePack(
    language="es",
    # UNSTOP is here because the Spanish reply tells the user to send it.
    opt_out=("STOP", "PARAR", "ALTO", "CANCELAR", "BAJA", "DAR DE BAJA"),
    opt_in=("START", "UNSTOP", "INICIO"),
    help=("AYUDA", "INFO"),
    # Verbatim from the seed page; Spanish typography puts the final period outside the quotes,
    # so the quoted reply itself has none.
    opt_out_reply=('MENSAJE DE RED: Ha respondido con la palabra "STOP", lo que bloquea todos '
                   "los mensajes de texto enviados desde este número. Volver a responder "
                   '"UNSTOP" para recibir mensajes de nuevo'),
    opt_in_reply=('MENSAJE DE RED: Ha respondido "unstop" y comenzará a recibir mensajes de '
                  "nuevo desde este número"),
    polite=("gracias", "por favor", "porfa", "porfavor"),
)

DEFAULT_PACKS: tuple[LanguagePack, ...] = (ENGLISH, DUTCH, FRENCH, SPANISH)


@dataclass(frozen=True)
class KeywordMatch:
    """A recognised keyword message and the reply to send for it."""

    kind: KeywordKind
    #: The canonical keyword as the pack lists it, upper case ("STOP", "OPT OUT", "ARRET").
    keyword: str
    #: ISO 639-1 code of the pack the keyword was taken from.
    language: str
    #: The reply text, already resolved (help falls back to the configured help text).
    reply: str


def normalise(text: str) -> list[str]:
    """Split ``text`` into comparable words.

    Casefolds, decomposes (Unicode NFKD) and drops every combining mark, so "ARRÊT", "arret"
    and "ÄRRET" all become "arret" and full-width or ligature forms become plain letters; then
    turns every character that is not a letter or a digit (punctuation, quotes, hyphens,
    apostrophes, emoji) into a space and splits on whitespace. "OPT-OUT" gives
    ``["opt", "out"]``, "don't stop!" gives ``["don", "t", "stop"]`` and "🛑" gives ``[]``.
    """
    # Casefold first: it can expand characters (ß -> ss), and decomposing afterwards makes sure
    # whatever it produces loses its marks too.
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    words = "".join(
        "" if unicodedata.category(ch).startswith("M") else (ch if ch.isalnum() else " ")
        for ch in decomposed)
    return words.split()


@dataclass(frozen=True)
class _Entry:
    kind: KeywordKind
    languages: tuple[str, ...]  # packs listing the keyword, in pack order
    spellings: Mapping[str, str]  # language -> canonical keyword in that pack


def _key(word: str, what: str) -> Key:
    key = tuple(normalise(word))
    if not key:
        raise ValueError(f"{what} {word!r} has no letters or digits")
    return key


def _lengths(table: Mapping[Key, object], tokens: Sequence[str], start: int,
             max_len: int) -> list[int]:
    """Lengths of the keys of ``table`` found at ``tokens[start:]``, longest first."""
    return [length for length in range(min(max_len, len(tokens) - start), 0, -1)
            if tuple(tokens[start:start + length]) in table]


def _first_sentence_words(text: str) -> int:
    """How many words the first sentence of ``text`` has, skipping empty leading sentences."""
    start = 0
    for brk in _SENTENCE_BREAK.finditer(text):
        words = len(normalise(text[start:brk.start()]))
        if words:
            return words
        start = brk.end()
    return len(normalise(text[start:]))


class KeywordEngine:
    """Recognises keyword messages (see the module docstring for the rule) and their replies."""

    def __init__(self, packs: Sequence[LanguagePack] = DEFAULT_PACKS, *, help_text: str,
                 default_language: str = "en", extra_opt_out: Sequence[str] = (),
                 extra_opt_in: Sequence[str] = (), extra_help: Sequence[str] = (),
                 opt_out_reply: str | None = None, opt_in_reply: str | None = None) -> None:
        """Build the lookups.

        ``help_text`` is the reply to HELP for packs without a ``help_reply``. The extras are
        added to the ``default_language`` pack, and the reply overrides replace that pack's
        replies. Raises ValueError on a configuration that cannot work: no packs, two packs for
        one language, a ``default_language`` without a pack, an empty help text or reply, a
        keyword without letters or digits, or one keyword that is two kinds at once.
        """
        if not help_text.strip():
            raise ValueError("help_text must not be empty")
        languages = [pack.language for pack in packs]
        if not languages:
            raise ValueError("at least one language pack is needed")
        if len(set(languages)) != len(languages):
            raise ValueError(f"more than one pack for a language: {languages}")
        if default_language not in languages:
            raise ValueError(f"default_language {default_language!r} has no pack ({languages})")

        resolved: list[LanguagePack] = []
        for pack in packs:
            if pack.language == default_language:
                pack = replace(
                    pack,
                    opt_out=pack.opt_out + tuple(extra_opt_out),
                    opt_in=pack.opt_in + tuple(extra_opt_in),
                    help=pack.help + tuple(extra_help),
                    opt_out_reply=pack.opt_out_reply if opt_out_reply is None else opt_out_reply,
                    opt_in_reply=pack.opt_in_reply if opt_in_reply is None else opt_in_reply)
            for reply in (pack.opt_out_reply, pack.opt_in_reply, pack.help_reply):
                if reply is not None and not reply.strip():
                    raise ValueError(f"empty reply in the {pack.language!r} pack")
            resolved.append(pack)

        self._packs = tuple(resolved)
        self._by_language = {pack.language: pack for pack in self._packs}
        self._help_text = help_text
        self._default_language = default_language
        self._lookup = self._build_lookup(self._packs)
        self._max_key = max(len(key) for key in self._lookup)
        self._polite = self._build_polite(self._packs)
        self._max_polite = max((len(key) for key in self._polite), default=0)
        self._hints = self._build_hints(self._lookup, self._polite)
        self._max_hint = max((len(key) for key in self._hints), default=0)

    @property
    def packs(self) -> tuple[LanguagePack, ...]:
        """The packs in use, with the extras and reply overrides applied."""
        return self._packs

    @property
    def default_language(self) -> str:
        """The language of keywords listed by several packs when the message gives no hint."""
        return self._default_language

    @staticmethod
    def _build_lookup(packs: Iterable[LanguagePack]) -> dict[Key, _Entry]:
        kinds: dict[Key, KeywordKind] = {}
        spellings: dict[Key, dict[str, str]] = {}
        for pack in packs:
            for kind in _KINDS:
                for word in pack.keywords(kind):
                    key = _key(word, f"{pack.language!r} keyword")
                    # One kind per keyword in every language, or the outcome of a message would
                    # depend on which language we guessed.
                    if kinds.setdefault(key, kind) != kind:
                        raise ValueError(f"keyword {word!r} is both {kinds[key]} and {kind}")
                    spellings.setdefault(key, {}).setdefault(pack.language, word.upper())
        return {key: _Entry(kind=kinds[key], languages=tuple(spellings[key]),
                            spellings=spellings[key]) for key in kinds}

    @staticmethod
    def _build_polite(packs: Iterable[LanguagePack]) -> dict[Key, frozenset[str]]:
        polite: dict[Key, set[str]] = {}
        for pack in packs:
            for phrase in pack.polite:
                polite.setdefault(_key(phrase, "polite phrase"), set()).add(pack.language)
        return {key: frozenset(langs) for key, langs in polite.items()}

    @staticmethod
    def _build_hints(lookup: Mapping[Key, _Entry],
                     polite: Mapping[Key, frozenset[str]]) -> dict[Key, frozenset[str]]:
        hints = dict(polite)
        for key, entry in lookup.items():
            if len(entry.languages) == 1:
                hints[key] = hints.get(key, frozenset()) | frozenset(entry.languages)
        return hints

    def _hinted_languages(self, tokens: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(len(tokens)):
            for length in range(1, min(self._max_hint, len(tokens) - i) + 1):
                langs = self._hints.get(tuple(tokens[i:i + length]))
                if langs:
                    found |= langs
        return found

    def _language(self, entry: _Entry, tokens: Sequence[str], start: int, end: int) -> str:
        if len(entry.languages) == 1:
            return entry.languages[0]
        hinted = self._hinted_languages(tokens[:start]) | self._hinted_languages(tokens[end:])
        candidates = [lang for lang in entry.languages if lang in hinted]
        if len(candidates) == 1:
            return candidates[0]
        if self._default_language in entry.languages:
            return self._default_language
        return entry.languages[0]

    def _reply(self, kind: KeywordKind, language: str) -> str:
        pack = self._by_language[language]
        if kind == "opt_out":
            return pack.opt_out_reply
        if kind == "opt_in":
            return pack.opt_in_reply
        return self._help_text if pack.help_reply is None else pack.help_reply

    def _count_words(self, tokens: Sequence[str], start: int) -> int:
        """Words in ``tokens[start:]``, a polite phrase counting as one, capped past the limit.

        "s'il vous plaît" normalises to four words and "a.u.b." to three; counting each as one
        keeps "arrêt s'il vous plaît" as short as "stop please", which is what it is.
        """
        count, i = 0, start
        while i < len(tokens) and count <= MAX_TRAILING_WORDS:
            polite = _lengths(self._polite, tokens, i, self._max_polite)
            i += polite[0] if polite else 1
            count += 1
        return count

    def _only_polite(self, tokens: Sequence[str], start: int, stop: int) -> bool:
        """Whether ``tokens[start:stop]`` is nothing but polite phrases (or nothing at all)."""
        i = start
        while i < stop:
            polite = [n for n in _lengths(self._polite, tokens, i, self._max_polite)
                      if i + n <= stop]
            if not polite:
                return False
            i += polite[0]
        return True

    def match(self, text: str) -> KeywordMatch | None:
        """The keyword ``text`` amounts to under the module's rule, or None for ordinary text."""
        tokens = normalise(text)
        start = 0
        lengths = _lengths(self._lookup, tokens, 0, self._max_key)
        if not lengths:
            # A keyword at the very start wins over a polite phrase, so the phrase is only
            # skipped when the message does not open with a keyword.
            polite = _lengths(self._polite, tokens, 0, self._max_polite)
            if polite:
                start = polite[0]
                lengths = _lengths(self._lookup, tokens, start, self._max_key)
        sentence_words: int | None = None  # computed at most once, and only when needed
        # Longest keyword first, but a shorter one still counts when only it satisfies the
        # rule: "Stop. All of you..." is STOP by the first-sentence rule, not STOP ALL.
        for length in lengths:
            end = start + length
            if self._count_words(tokens, end) > MAX_TRAILING_WORDS:
                if sentence_words is None:
                    sentence_words = _first_sentence_words(text)
                if sentence_words < end or not self._only_polite(tokens, end, sentence_words):
                    continue
            entry = self._lookup[tuple(tokens[start:end])]
            language = self._language(entry, tokens, start, end)
            return KeywordMatch(kind=entry.kind, keyword=entry.spellings[language],
                                language=language, reply=self._reply(entry.kind, language))
        return None
