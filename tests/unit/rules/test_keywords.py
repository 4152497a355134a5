"""The keyword engine: real-world replies, replies per language, configuration, normalise()."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sms_core.rules.keywords import (
    DEFAULT_PACKS,
    DUTCH,
    ENGLISH,
    FRENCH,
    MAX_TRAILING_WORDS,
    SPANISH,
    KeywordEngine,
    KeywordKind,
    KeywordMatch,
    LanguagePack,
    normalise,
)

HELP_TEXT = "Acme alerts: reply STOP to unsubscribe, START to resubscribe. Msg&data rates apply."

EN_OUT = ("You have successfully been unsubscribed to messages from this number. "
          "Reply START to resubscribe.")
EN_IN = ("You have successfully been re-subscribed to messages from this number. "
         "Reply STOP to unsubscribe.")
NL_OUT = ("U bent afgemeld voor berichten van dit nummer. "
          "Antwoord met START om u opnieuw aan te melden.")
NL_IN = "U bent aangemeld voor berichten van dit nummer. Antwoord met STOP om u af te melden."
FR_OUT = ("Vous avez été correctement désabonné des messages de ce numéro. "
          "Répondez START pour vous réabonner.")
FR_IN = ("Vous avez été correctement réabonné aux messages de ce numéro. "
         "Répondez STOP pour vous désabonner.")
ES_OUT = ('MENSAJE DE RED: Ha respondido con la palabra "STOP", lo que bloquea todos los mensajes '
          'de texto enviados desde este número. Volver a responder "UNSTOP" para recibir '
          "mensajes de nuevo")
ES_IN = ('MENSAJE DE RED: Ha respondido "unstop" y comenzará a recibir mensajes de nuevo desde '
         "este número")

OUT: KeywordKind = "opt_out"
IN: KeywordKind = "opt_in"
HELP: KeywordKind = "help"

LONG_TAIL = " ".join(["and I do not want any of these messages ever again"] * 20)

# (text, kind, canonical keyword, language); kind None means ordinary text.
CASES: list[tuple[str, KeywordKind | None, str | None, str | None]] = [
    # --- English opt-out: the keyword alone, any case, punctuation, emoji, whitespace
    ("STOP", OUT, "STOP", "en"),
    ("stop", OUT, "STOP", "en"),
    ("Stop", OUT, "STOP", "en"),
    ("  sToP  ", OUT, "STOP", "en"),
    ("\tSTOP\n", OUT, "STOP", "en"),
    ("STOP!!!", OUT, "STOP", "en"),
    ("STOP!!", OUT, "STOP", "en"),
    ("stop.", OUT, "STOP", "en"),
    ("stop?", OUT, "STOP", "en"),
    ("Stop 🛑", OUT, "STOP", "en"),
    ("STOP 🛑", OUT, "STOP", "en"),
    ("🛑 STOP 🛑", OUT, "STOP", "en"),
    ('"STOP"', OUT, "STOP", "en"),
    ("'stop'", OUT, "STOP", "en"),
    ("(stop)", OUT, "STOP", "en"),
    ("*STOP*", OUT, "STOP", "en"),
    ("\uff33\uff34\uff2f\uff30", OUT, "STOP", "en"),  # full-width letters, NFKD makes them ASCII
    ("STOP ALL", OUT, "STOP ALL", "en"),
    ("stop all", OUT, "STOP ALL", "en"),
    ("Stop all!", OUT, "STOP ALL", "en"),
    ("STOPALL", OUT, "STOPALL", "en"),
    ("stopall please", OUT, "STOPALL", "en"),
    ("UNSUBSCRIBE", OUT, "UNSUBSCRIBE", "en"),
    ("unsubscribe", OUT, "UNSUBSCRIBE", "en"),
    ("Unsubscribe.", OUT, "UNSUBSCRIBE", "en"),
    ("CANCEL", OUT, "CANCEL", "en"),
    ("cancel", OUT, "CANCEL", "en"),
    ("END", OUT, "END", "en"),
    ("end", OUT, "END", "en"),
    ("End.", OUT, "END", "en"),
    ("QUIT", OUT, "QUIT", "en"),
    ("quit", OUT, "QUIT", "en"),
    ("OPTOUT", OUT, "OPTOUT", "en"),
    ("optout", OUT, "OPTOUT", "en"),
    ("OPT OUT", OUT, "OPT OUT", "en"),
    ("OPT-OUT", OUT, "OPT OUT", "en"),
    ("opt-out", OUT, "OPT OUT", "en"),
    ("opt out", OUT, "OPT OUT", "en"),
    ("Opt Out", OUT, "OPT OUT", "en"),
    ("Opt—out", OUT, "OPT OUT", "en"),  # em dash
    ("opt_out", OUT, "OPT OUT", "en"),
    ("REVOKE", OUT, "REVOKE", "en"),
    ("revoke", OUT, "REVOKE", "en"),
    # --- English opt-out: short polite or angry tails (at most 3 words)
    ("stop please", OUT, "STOP", "en"),
    ("Stop. Thank you", OUT, "STOP", "en"),
    ("Stop, thank you!", OUT, "STOP", "en"),
    ("stop it now", OUT, "STOP", "en"),
    ("STOP IT NOW!!!", OUT, "STOP", "en"),
    ("stop texting me", OUT, "STOP", "en"),
    ("Stop sending messages", OUT, "STOP", "en"),
    ("Unsubscribe me please", OUT, "UNSUBSCRIBE", "en"),
    ("unsubscribe me", OUT, "UNSUBSCRIBE", "en"),
    ("quit texting me", OUT, "QUIT", "en"),
    ("Quit it", OUT, "QUIT", "en"),
    ("cancel my appointment", OUT, "CANCEL", "en"),  # the documented trade-off
    ("Cancel please", OUT, "CANCEL", "en"),
    ("end please", OUT, "END", "en"),
    ("opt out please", OUT, "OPT OUT", "en"),
    ("revoke consent", OUT, "REVOKE", "en"),
    ("stop stop stop", OUT, "STOP", "en"),
    ("STOP STOP STOP STOP", OUT, "STOP", "en"),
    ("STOP\nthanks", OUT, "STOP", "en"),
    ("stop\r\nthank you", OUT, "STOP", "en"),
    ("stop thx", OUT, "STOP", "en"),
    # --- English opt-out: one leading polite phrase
    ("please stop", OUT, "STOP", "en"),
    ("Please stop.", OUT, "STOP", "en"),
    ("PLEASE STOP!!!", OUT, "STOP", "en"),
    ("pls stop", OUT, "STOP", "en"),
    ("plz unsubscribe", OUT, "UNSUBSCRIBE", "en"),
    ("please unsubscribe me", OUT, "UNSUBSCRIBE", "en"),
    ("Please opt me out", None, None, None),  # OPT alone is no keyword
    ("please please stop", None, None, None),  # only one polite phrase is skipped
    # --- English opt-out: the first sentence is just the keyword
    ("STOP. I never signed up for this and I want no more messages", OUT, "STOP", "en"),
    ("Stop! Who is this? I don't know you", OUT, "STOP", "en"),
    ("Stop please! Who gave you my number?", OUT, "STOP", "en"),
    ("STOP\n\nSent from my iPhone", OUT, "STOP", "en"),
    ("!!! STOP !!! I never asked for any of these messages", OUT, "STOP", "en"),
    ("Stop. All of you stop texting me now", OUT, "STOP", "en"),
    ("STOP ALL. I never asked for any of these messages", OUT, "STOP ALL", "en"),
    ("Unsubscribe... this is the third time I have asked", OUT, "UNSUBSCRIBE", "en"),
    ("Please stop. I have asked you many times already", OUT, "STOP", "en"),
    # --- English: ordinary text
    ("don't stop", None, None, None),
    ("Don't stop!", None, None, None),
    ("I am stopping by at 5", None, None, None),
    ("Can you stop by tomorrow?", None, None, None),
    ("Stop by tomorrow at 5 if you can", None, None, None),
    ("Stop sending me messages please", None, None, None),  # 4 words, no sentence break
    ("where do I stop", None, None, None),
    ("stopping", None, None, None),
    ("stopped", None, None, None),
    ("Stopped at the store", None, None, None),
    ("cancelled", None, None, None),
    ("Cancelled my order", None, None, None),
    ("ended", None, None, None),
    ("quitting", None, None, None),
    ("unsubscribed", None, None, None),
    ("helpful", None, None, None),
    ("That was helpful thanks", None, None, None),
    ("Stopp", None, None, None),  # misspelling (or Norwegian): no fuzzy matching
    ("STOPP", None, None, None),
    ("Sotp", None, None, None),
    ("S T O P", None, None, None),  # spaced-out letters are four words, none a keyword
    ("s.t.o.p", None, None, None),
    ("The end", None, None, None),
    ("Start the meeting at 5 please", None, None, None),
    ("Start the car. Then drive to the shop", None, None, None),
    ("When does it start?", None, None, None),
    ("I need help", None, None, None),
    ("Can you help me with my order please", None, None, None),
    ("Help me with my order please", None, None, None),
    ("Info about my order is wrong please", None, None, None),
    ("Yes", None, None, None),
    ("YES", None, None, None),
    ("yes please", None, None, None),
    ("Y", None, None, None),
    ("ok", None, None, None),
    ("No", None, None, None),
    ("please", None, None, None),
    ("Thank you!", None, None, None),
    ("", None, None, None),
    ("   ", None, None, None),
    ("\n\t \r\n", None, None, None),
    ("🛑", None, None, None),
    ("🙏🙏🙏", None, None, None),
    ("!!!", None, None, None),
    ("stop " + LONG_TAIL, None, None, None),  # > 1,000 characters, no sentence break
    # --- English help
    ("help", HELP, "HELP", "en"),
    ("HELP", HELP, "HELP", "en"),
    ("HELP!", HELP, "HELP", "en"),
    ("Help?", HELP, "HELP", "en"),
    ("help me", HELP, "HELP", "en"),
    ("help please", HELP, "HELP", "en"),
    ("please help", HELP, "HELP", "en"),
    ("info", HELP, "INFO", "en"),
    ("INFO", HELP, "INFO", "en"),
    ("INFO please", HELP, "INFO", "en"),
    ("info?", HELP, "INFO", "en"),
    # --- English opt-in
    ("start", IN, "START", "en"),
    ("START", IN, "START", "en"),
    ("Start!", IN, "START", "en"),
    ("start again please", IN, "START", "en"),
    ("Start sending again", IN, "START", "en"),
    ("unstop", IN, "UNSTOP", "en"),
    ("UNSTOP", IN, "UNSTOP", "en"),
    ("Unstop please", IN, "UNSTOP", "en"),
    ("SUBSCRIBE", IN, "SUBSCRIBE", "en"),
    ("subscribe me", IN, "SUBSCRIBE", "en"),
    ("RESUME", IN, "RESUME", "en"),
    ("OPTIN", IN, "OPTIN", "en"),
    ("OPT IN", IN, "OPT IN", "en"),
    ("opt-in", IN, "OPT IN", "en"),
    ("subscribed", None, None, None),
    # --- French
    ("ARRET", OUT, "ARRET", "fr"),
    ("ARRÊT", OUT, "ARRET", "fr"),
    ("arrêt", OUT, "ARRET", "fr"),
    ("Arret", OUT, "ARRET", "fr"),
    ("ÄRRET", OUT, "ARRET", "fr"),  # Ä -> A: accents never matter
    ("arrêt!", OUT, "ARRET", "fr"),
    ("arrêt s'il vous plaît", OUT, "ARRET", "fr"),  # a polite phrase counts as one word
    ("Arrêt, s\u2019il vous plaît.", OUT, "ARRET", "fr"),
    ("arret svp", OUT, "ARRET", "fr"),
    ("stop merci", OUT, "STOP", "fr"),
    ("Stop, merci", OUT, "STOP", "fr"),
    ("STOP svp", OUT, "STOP", "fr"),
    ("svp stop", OUT, "STOP", "fr"),
    ("STOP s'il vous plaît", OUT, "STOP", "fr"),
    ("STOP ARRET", OUT, "STOP", "fr"),  # ARRET points to French
    ("ARRET stop", OUT, "ARRET", "fr"),
    ("DESABONNER", OUT, "DESABONNER", "fr"),
    ("désabonner", OUT, "DESABONNER", "fr"),
    ("Désabonner svp", OUT, "DESABONNER", "fr"),
    ("DÉSINSCRIRE", OUT, "DESINSCRIRE", "fr"),
    ("ARRET. Je n'ai jamais demandé à recevoir ces messages", OUT, "ARRET", "fr"),
    ("AIDE", HELP, "AIDE", "fr"),
    ("aide", HELP, "AIDE", "fr"),
    ("Aide svp", HELP, "AIDE", "fr"),
    ("info svp", HELP, "INFO", "fr"),
    ("INFO merci", HELP, "INFO", "fr"),
    ("START merci", IN, "START", "fr"),
    ("arrêtez", None, None, None),  # inflection
    ("Désabonnez-moi", None, None, None),
    ("arrête de m'écrire", None, None, None),
    ("Commencer", None, None, None),  # not an opt-in: the French page says START
    ("J'ai besoin d'aide", None, None, None),
    # --- Dutch
    ("STOP alsjeblieft", OUT, "STOP", "nl"),
    ("stop aub", OUT, "STOP", "nl"),
    ("Stop a.u.b.", OUT, "STOP", "nl"),
    ("Stop, dank je wel", OUT, "STOP", "nl"),
    ("STOPPEN", OUT, "STOPPEN", "nl"),
    ("AFMELDEN", OUT, "AFMELDEN", "nl"),
    ("afmelden", OUT, "AFMELDEN", "nl"),
    ("Afmelden graag", OUT, "AFMELDEN", "nl"),
    ("UITSCHRIJVEN", OUT, "UITSCHRIJVEN", "nl"),
    ("uitschrijven aub", OUT, "UITSCHRIJVEN", "nl"),
    ("AANMELDEN", IN, "AANMELDEN", "nl"),
    ("START alsjeblieft", IN, "START", "nl"),
    ("HULP", HELP, "HULP", "nl"),
    ("help alsjeblieft", HELP, "HELP", "nl"),
    ("info bedankt", HELP, "INFO", "nl"),
    ("afgemeld", None, None, None),
    ("Ik wil stoppen", None, None, None),
    ("Ik heb hulp nodig", None, None, None),
    # --- Spanish
    ("STOP gracias", OUT, "STOP", "es"),
    ("stop por favor", OUT, "STOP", "es"),
    ("por favor stop", OUT, "STOP", "es"),
    ("PARAR", OUT, "PARAR", "es"),
    ("parar", OUT, "PARAR", "es"),
    ("ALTO", OUT, "ALTO", "es"),
    ("¡Alto!", OUT, "ALTO", "es"),
    ("CANCELAR", OUT, "CANCELAR", "es"),
    ("cancelar por favor", OUT, "CANCELAR", "es"),
    ("BAJA", OUT, "BAJA", "es"),
    ("baja por favor", OUT, "BAJA", "es"),
    ("Dar de baja", OUT, "DAR DE BAJA", "es"),
    ("STOP BAJA", OUT, "STOP", "es"),
    ("ALTO. No quiero más mensajes de este número", OUT, "ALTO", "es"),
    ("AYUDA", HELP, "AYUDA", "es"),
    ("ayuda por favor", HELP, "AYUDA", "es"),
    ("INICIO", IN, "INICIO", "es"),
    ("UNSTOP gracias", IN, "UNSTOP", "es"),
    ("START gracias", IN, "START", "es"),
    ("Comenzar", None, None, None),  # not an opt-in, like COMMENCER
    ("parado", None, None, None),
    ("Necesito ayuda", None, None, None),
    ("¿Puedo parar mañana en la tienda?", None, None, None),
    ("Parar en la tienda mañana por favor", None, None, None),
    # --- Mixed signals: a shared keyword with no single-language hint takes the default
    ("stop please merci", OUT, "STOP", "en"),
    ("stop gracias merci", OUT, "STOP", "en"),
]


@pytest.fixture(scope="module")
def engine() -> KeywordEngine:
    return KeywordEngine(help_text=HELP_TEXT)


def test_the_table_is_large() -> None:
    assert len(CASES) >= 150
    assert len({case[0] for case in CASES}) == len(CASES), "duplicate rows"


@pytest.mark.parametrize(("text", "kind", "keyword", "language"), CASES)
def test_real_world_replies(engine: KeywordEngine, text: str, kind: KeywordKind | None,
                            keyword: str | None, language: str | None) -> None:
    found = engine.match(text)
    if kind is None:
        assert found is None
        return
    assert found is not None
    assert (found.kind, found.keyword, found.language) == (kind, keyword, language)


def test_long_message_counts_only_when_its_first_sentence_is_the_keyword(
        engine: KeywordEngine) -> None:
    assert len("stop " + LONG_TAIL) > 1000
    assert engine.match("stop " + LONG_TAIL) is None
    assert engine.match("STOP " * 300) is None  # no sentence break, far too many words
    found = engine.match("stop. " + LONG_TAIL)
    assert found is not None and found.kind == "opt_out"
    found = engine.match("Stop\n" + LONG_TAIL)
    assert found is not None and found.keyword == "STOP"
    assert engine.match("Please stop by. " + LONG_TAIL) is None


@pytest.mark.parametrize(("text", "language"), [
    ("STOP", "en"), ("stop merci", "fr"), ("stop alsjeblieft", "nl"), ("stop gracias", "es")])
def test_stop_in_each_language(engine: KeywordEngine, text: str, language: str) -> None:
    found = engine.match(text)
    assert found is not None
    assert (found.kind, found.keyword, found.language) == ("opt_out", "STOP", language)


@pytest.mark.parametrize(("text", "reply"), [
    ("STOP", EN_OUT), ("START", EN_IN),
    ("STOP alsjeblieft", NL_OUT), ("AANMELDEN", NL_IN),
    ("ARRÊT", FR_OUT), ("START merci", FR_IN),
    ("BAJA", ES_OUT), ("INICIO", ES_IN), ("unstop gracias", ES_IN),
])
def test_default_replies_are_the_seed_texts(engine: KeywordEngine, text: str,
                                            reply: str) -> None:
    found = engine.match(text)
    assert found is not None and found.reply == reply


def test_pack_replies_are_the_seed_texts() -> None:
    assert (ENGLISH.opt_out_reply, ENGLISH.opt_in_reply) == (EN_OUT, EN_IN)
    assert (DUTCH.opt_out_reply, DUTCH.opt_in_reply) == (NL_OUT, NL_IN)
    assert (FRENCH.opt_out_reply, FRENCH.opt_in_reply) == (FR_OUT, FR_IN)
    assert (SPANISH.opt_out_reply, SPANISH.opt_in_reply) == (ES_OUT, ES_IN)
    assert DEFAULT_PACKS == (ENGLISH, DUTCH, FRENCH, SPANISH)
    assert [pack.language for pack in DEFAULT_PACKS] == ["en", "nl", "fr", "es"]


def test_yes_is_never_an_opt_in() -> None:
    for pack in DEFAULT_PACKS:
        assert "YES" not in pack.opt_in


@pytest.mark.parametrize("text", ["help", "AIDE", "ayuda", "HULP", "info svp"])
def test_help_uses_help_text(engine: KeywordEngine, text: str) -> None:
    found = engine.match(text)
    assert found is not None and found.kind == "help" and found.reply == HELP_TEXT


def test_pack_help_reply_wins_over_help_text() -> None:
    french = replace(FRENCH, help_reply="Alertes Acme : répondez ARRET pour vous désabonner.")
    engine = KeywordEngine((ENGLISH, DUTCH, french, SPANISH), help_text=HELP_TEXT)
    aide = engine.match("AIDE")
    assert aide is not None and aide.reply == french.help_reply
    help_ = engine.match("HELP")
    assert help_ is not None and help_.reply == HELP_TEXT


def test_extras_join_the_default_language() -> None:
    engine = KeywordEngine(help_text=HELP_TEXT, extra_opt_out=["Leave me alone", "BASTA"],
                           extra_opt_in=["UNPAUSE"], extra_help=["SUPPORT"])
    cases = [("leave me alone!", "opt_out", "LEAVE ME ALONE"), ("basta", "opt_out", "BASTA"),
             ("Unpause please", "opt_in", "UNPAUSE"), ("support?", "help", "SUPPORT")]
    for text, kind, keyword in cases:
        found = engine.match(text)
        assert found is not None
        assert (found.kind, found.keyword, found.language) == (kind, keyword, "en")
    assert engine.match("STOP") is not None  # the built-in words are still there
    english = next(pack for pack in engine.packs if pack.language == "en")
    assert "BASTA" in english.opt_out and "UNPAUSE" in english.opt_in
    assert "BASTA" not in ENGLISH.opt_out  # the module's packs are untouched


def test_reply_overrides_replace_the_default_language_replies() -> None:
    engine = KeywordEngine(help_text=HELP_TEXT, opt_out_reply="Acme: you're out. START to undo.",
                           opt_in_reply="Acme: welcome back. STOP to leave.")
    stop = engine.match("stop")
    start = engine.match("start")
    assert stop is not None and stop.reply == "Acme: you're out. START to undo."
    assert start is not None and start.reply == "Acme: welcome back. STOP to leave."
    arret = engine.match("arret")
    assert arret is not None and arret.reply == FR_OUT  # other languages keep theirs


def test_default_language_decides_shared_keywords() -> None:
    engine = KeywordEngine(help_text=HELP_TEXT, default_language="fr",
                           opt_out_reply="Acme : vous êtes désabonné.")
    stop = engine.match("STOP")
    assert stop is not None and stop.language == "fr"
    assert stop.reply == "Acme : vous êtes désabonné."
    assert engine.default_language == "fr"
    please = engine.match("stop please")
    assert please is not None and please.language == "en"  # a clear hint still wins
    unstop = engine.match("UNSTOP")  # not French: the first pack listing it
    assert unstop is not None and unstop.language == "en"
    end = engine.match("END")
    assert end is not None and end.language == "en"


def test_custom_packs() -> None:
    german = LanguagePack(language="de", opt_out=("STOP", "STOPP", "ABMELDEN"),
                          opt_in=("START", "ANMELDEN"), help=("HILFE",),
                          opt_out_reply="Abgemeldet.", opt_in_reply="Angemeldet.",
                          help_reply="Hilfe: ...", polite=("bitte", "danke"))
    engine = KeywordEngine((ENGLISH, german), help_text=HELP_TEXT)
    assert engine.match("Stopp bitte") == KeywordMatch("opt_out", "STOPP", "de", "Abgemeldet.")
    assert engine.match("stop danke") == KeywordMatch("opt_out", "STOP", "de", "Abgemeldet.")
    assert engine.match("HILFE") == KeywordMatch("help", "HILFE", "de", "Hilfe: ...")
    assert engine.match("arret") is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"packs": ()}, "at least one"),
    ({"packs": (ENGLISH, ENGLISH)}, "more than one pack"),
    ({"default_language": "de"}, "default_language"),
    ({"help_text": "  "}, "help_text"),
    ({"extra_opt_in": ["END"]}, "both opt_out and opt_in"),
    ({"extra_help": ["STOP"]}, "both opt_out and help"),
    ({"extra_opt_out": ["!!!"]}, "no letters or digits"),
    ({"opt_out_reply": ""}, "empty reply"),
])
def test_bad_configuration_fails_at_start(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"help_text": HELP_TEXT, **kwargs}
    with pytest.raises(ValueError, match=message):
        KeywordEngine(**arguments)  # type: ignore[arg-type]


def test_every_keyword_of_every_pack_matches_its_kind(engine: KeywordEngine) -> None:
    checked = 0
    for pack in DEFAULT_PACKS:
        for kind in ("opt_out", "opt_in", "help"):
            for word in pack.keywords(kind):
                for text in (word, word.lower(), f"  {word}!! "):
                    found = engine.match(text)
                    assert found is not None, text
                    assert found.kind == kind, text
                    assert normalise(found.keyword) == normalise(word), text
                    listed = [p.language for p in DEFAULT_PACKS
                              if normalise(word) in [normalise(w) for w in p.keywords(kind)]]
                    assert found.language in listed, text
                    checked += 1
    assert checked > 100


def test_keywords_do_not_match_inflected() -> None:
    engine = KeywordEngine(help_text=HELP_TEXT)
    for pack in DEFAULT_PACKS:
        for kind in ("opt_out", "opt_in", "help"):
            for word in pack.keywords(kind):
                if len(normalise(word)) > 1:
                    continue  # "STOP ALLed" is STOP followed by one word, rightly
                assert engine.match(f"{word}ed") is None, word
                assert engine.match(f"I {word}") is None, word


def test_trailing_word_limit() -> None:
    engine = KeywordEngine(help_text=HELP_TEXT)
    assert MAX_TRAILING_WORDS == 3
    assert engine.match("stop " + " ".join(["x"] * MAX_TRAILING_WORDS)) is not None
    assert engine.match("stop " + " ".join(["x"] * (MAX_TRAILING_WORDS + 1))) is None
    # polite phrases count as one word each
    assert engine.match("stop x y thank you") is not None
    assert engine.match("stop x y z thank you") is None


@pytest.mark.parametrize(("text", "words"), [
    ("STOP", ["stop"]),
    ("  sToP  ", ["stop"]),
    ("STOP!!!", ["stop"]),
    ("ARRÊT", ["arret"]),
    ("ÄRRET", ["arret"]),
    ("désabonner", ["desabonner"]),
    ("OPT-OUT", ["opt", "out"]),
    ("opt-out", ["opt", "out"]),
    ("Opt Out", ["opt", "out"]),
    ("don't stop", ["don", "t", "stop"]),
    ("s\u2019il vous plaît", ["s", "il", "vous", "plait"]),
    ("Stop 🛑", ["stop"]),
    ("🛑", []),
    ("", []),
    (" \n\t", []),
    ("STOP\nthanks", ["stop", "thanks"]),
    ("Straße", ["strasse"]),
    ("\uff33\uff34\uff2f\uff30", ["stop"]),
    ("ﬁn", ["fin"]),
    ("¡Alto!", ["alto"]),
    ("a.u.b.", ["a", "u", "b"]),
    ("Stop2", ["stop2"]),
    ("İSTANBUL", ["istanbul"]),
])
def test_normalise(text: str, words: list[str]) -> None:
    assert normalise(text) == words


def test_match_is_pure_and_repeatable(engine: KeywordEngine) -> None:
    assert engine.match("stop merci") == engine.match("stop merci")
    with pytest.raises(AttributeError):
        engine.match("STOP").kind = "help"  # type: ignore[union-attr, misc]
