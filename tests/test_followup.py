"""The follow-up resolver on its own (pure text in, standalone query out), and
through the real engine on the seeds, where "it" points at the last answer."""

from __future__ import annotations

import pytest

from qa.followup import is_followup, resolve


@pytest.mark.parametrize(
    "question",
    [
        "How long did it last?",
        "And on Sunday?",
        "What about the hostages?",
        "When?",
        "What did Biden say about it?",
        "What happened there?",
        "Is it safe?",
        "What else?",
        "Were there other talks?",
    ],
)
def test_context_dependent_questions_are_followups(question: str) -> None:
    assert is_followup(question)


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of France?",
        "How many Palestinian prisoners convicted of murder would Israel release?",
        "Which city is Israel planning a ground assault on?",
        # existential "there", expletive "it", and "that"/"other" beside a name of its own (INSCIT users)
        "Was there a revival in Juneteenth celebrations?",
        "Is it possible to be addicted to sweetened beverages?",
        "What were the remarks that Vicente Fox Quesada made?",
        "Do other languages have an abbreviation for OJ?",
        # "this year", "these days": the asker's own time, not a pointer back
        "Who presented this year's Golden Joystick awards?",
        "Who runs Aisha's Salon and Spa these days?",
    ],
)
def test_self_contained_questions_stand_alone(question: str) -> None:
    r = resolve(question, ["How long did the Thursday call between Biden and Netanyahu last?"])
    assert not r.followup and r.query == question and r.dense_texts == [question]


def test_swapped_day_rewrites_the_previous_question() -> None:
    r = resolve("And on Sunday?", ["How long did Biden and Netanyahu's Thursday call last?"])
    assert r.followup and r.query == "How long did Biden and Netanyahu's Sunday call last?"
    assert "Thursday" not in r.lexical and r.dense_texts[0] == r.query
    assert r.type_text == r.query  # still a "how long" question: a duration is wanted
    assert r.asked == r.query  # what it asks is the rewrite


def test_ellipsis_without_a_slot_keeps_the_previous_wording() -> None:
    r = resolve("And the hostages?", ["How long did Biden and Netanyahu's Thursday call last?"])
    assert r.followup and r.query.startswith("And the hostages?") and "Thursday" in r.query
    assert r.type_text == "How long did Biden and Netanyahu's Thursday call last?"


def test_pronoun_takes_the_previous_answers_names_nearest_the_question_words() -> None:
    prev = "Which city is Israel expected to launch a ground assault on?"
    answer = (
        "The White House said earlier on Sunday that, in their first call since January 19, Biden and Netanyahu "
        "discussed Israel's ongoing campaign in Gaza and Israel's anticipated ground assault on the city of Rafah."
    )
    r = resolve("What did Biden say about it?", [prev], [answer])
    assert "Rafah" in r.carried and "Rafah" in r.query
    assert r.dense_texts[:3] == ["What did Biden say about it?", prev, answer]
    assert r.type_text == "What did Biden say about it?"
    without = resolve("What did Biden say about it?", [prev])
    assert "Rafah" not in without.query and answer not in without.dense_texts


def test_engine_resolves_it_to_the_answer_it_gave(engine) -> None:
    first = "Which city is Israel expected to launch a ground assault on?"
    assert "Rafah" in engine.ask(first).answers[0].text
    res = engine.ask("What did Biden say about it?", history=[first])
    assert res.followup and "Rafah" in res.query
    swapped = engine.ask("And on Sunday?", history=["How long did Biden and Netanyahu's Thursday call last?"])
    assert swapped.query == "How long did Biden and Netanyahu's Sunday call last?"
    assert any("45 minutes" in a.text for a in swapped.answers[:3])


def test_the_noun_the_question_word_governs_points_at_the_referent() -> None:
    """ "Which *city* ...": of the answer's names, the one beside "city" comes
    first, not the one beside more of the question's other words (Hamas)."""
    from qa.followup import _answer_terms

    answer = (
        "The White House said earlier on Sunday that, in their first call since January 19, Biden and Netanyahu "
        "discussed Israel’s ongoing campaign in Gaza, the return of hostages held by Hamas, and Israel’s "
        "anticipated ground assault on the city of Rafah, which has drawn concern from the US."
    )
    assert _answer_terms(answer, "Which city is Israel expected to launch a ground assault on?", set())[0] == "Rafah"


def test_canard_answer_check_matches_whole_sentences_of_the_answer() -> None:
    """The CANARD answer@5 check: a corpus sentence counts when it is part of
    the turn's answer, including the "." the corpus added to an answer with no
    stop of its own; a few letters of it do not."""
    from qa.eval.canard import _norm, in_answer

    answer = _norm("He received honorary doctorates and a number of professional honours, mostly in Europe")
    assert in_answer("He received honorary doctorates and a number of professional honours, mostly in Europe.", answer)
    assert in_answer("He received honorary doctorates", answer)
    assert not in_answer("He received a knighthood.", answer)
    assert not in_answer("Yes.", _norm("Yesterday he said no"))
    assert in_answer("Yes.", _norm("Yes."))


def test_inscit_turns_take_gold_passages_from_direct_answers_only() -> None:
    """INSCIT: a turn's question is the last utterance and its history the
    earlier *user* utterances (every other one); gold passages come only from
    annotations that answered directly, and a turn is "no answer" only when
    every annotator found nothing relevant."""
    from qa.eval.inscit import half, passage_file, passages, turns

    ev = lambda pid, text: {"passage_id": pid, "passage_text": text, "passage_titles": [pid.split(":")[0], "Sec"]}  # noqa: E731
    convs = {
        "c1": {
            "turns": [
                {
                    "context": ["Can cheese be made from soy?"],
                    "labels": [
                        {"responseType": "directAnswer", "evidence": [ev("Vegan cheese:17", "Soy  milk is used.")]},
                        {"responseType": "relatedInfo", "evidence": [ev("Cheese:2", "Cheese is old.")]},
                    ],
                },
                {
                    "context": ["Can cheese be made from soy?", "Yes.", "Who invented it?"],
                    "prevEvidence": [[ev("Vegan cheese:17", "Soy  milk is used.")], [ev("Tofu:1", "Tofu is curd.")]],
                    "labels": [{"responseType": "noAnswerNoRelevantInfo", "evidence": []}],
                },
            ]
        }
    }
    items = turns(convs)
    assert [t["question"] for t in items] == ["Can cheese be made from soy?", "Who invented it?"]
    assert items[1]["history"] == ["Can cheese be made from soy?"]
    assert items[0]["gold"] == ["Vegan cheese:17"] and not items[0]["no_answer"]
    assert items[1]["gold"] == [] and items[1]["no_answer"]
    corpus = passages(convs)
    assert set(corpus) == {"Vegan cheese:17", "Cheese:2", "Tofu:1"}
    assert corpus["Vegan cheese:17"] == ("Vegan cheese: Sec", "Soy milk is used.")
    assert passage_file("Vegan cheese:17") != passage_file("Vegan cheese:1") and "/" not in passage_file("a/b:1")
    assert half("c1") in ("dev", "test") and half("c1") == half("c1")


@pytest.mark.parametrize(
    "question, previous, standalone",
    [
        # "And X?" keeps the previous question's frame with X in place of its focus
        (
            "And Vera Drake?",
            "How many Bafta nominations did The Aviator get?",
            "How many Bafta nominations did Vera Drake get?",
        ),
        (
            "And the Liberal Democrats?",
            "What do the Tories want done about the 24-hour licensing changes?",
            "What do the Liberal Democrats want done about the 24-hour licensing changes?",
        ),
        (
            "And his shotgun?",
            "Where did hunter Bharrat Ramdehol leave his tractor?",
            "Where did hunter Bharrat Ramdehol leave his shotgun?",
        ),
        (
            "And how many in 2022 so far?",
            "How many migrants crossed the Darien jungle in 2021?",
            "How many migrants crossed the Darien jungle in 2022?",
        ),
        (
            "What about Spain?",
            "How many people have died of the virus in Italy?",
            "How many people have died of the virus in Spain?",
        ),
        # X is another participant, not the setting a preposition introduces
        (
            "And Arsenal?",
            "Who will Oldham play in the FA Cup fourth round?",
            "Who will Arsenal play in the FA Cup fourth round?",
        ),
        (
            "And Robin Cook?",
            "How much does Michael Portillo earn outside Parliament?",
            "How much does Robin Cook earn outside Parliament?",
        ),
        # a possessive X swaps the possessive name
        (
            "And Kasabian's Cut Off?",
            "At what position did the Scissor Sisters' Filthy/Gorgeous enter the UK singles chart?",
            "At what position did Kasabian's Cut Off enter the UK singles chart?",
        ),
        # a word X shares with the frame anchors the phrase it replaces
        (
            "And best screenplay?",
            "Who won best actress at the Evening Standard British Film Awards?",
            "Who won best screenplay at the Evening Standard British Film Awards?",
        ),
        (
            "And for best supporting actor?",
            "Who do bookmakers make favourite for the best actor Oscar?",
            "Who do bookmakers make favourite for the best supporting actor Oscar?",
        ),
    ],
)
def test_ellipsis_puts_the_new_focus_in_the_previous_frame(question: str, previous: str, standalone: str) -> None:
    r = resolve(question, [previous])
    assert r.followup and r.query == standalone
    # what was swapped out is not carried back in
    old = set(previous.split()) - set(standalone.split())
    assert not old & set(r.lexical.split()), r.lexical


def test_an_ellipsis_after_an_ellipsis_takes_the_frame_that_turn_asked() -> None:
    """ "What about David Blunkett?" after "And Robin Cook?" swaps Robin Cook in the rewritten turn, not in the
    bare "And Robin Cook?"; "the" before a name is not a noun phrase of its own to swap ("And the comedy
    prize?" does not replace "the Evening Standard")."""
    history = ["How much does Michael Portillo earn outside Parliament?", "And Robin Cook?"]
    assert (
        resolve("What about David Blunkett?", history).query == "How much does David Blunkett earn outside Parliament?"
    )
    history = ["Who won best actress at the Evening Standard British Film Awards?", "And best screenplay?"]
    r = resolve("And the comedy prize?", history)
    assert r.followup and "Evening Standard" in r.query and "comedy prize Film" not in r.query


@pytest.mark.parametrize(
    "question",
    [
        "Why was that decision a mistake, according to Jupiter's analyst?",  # names its own source, still points back
        "Does Bloomberg admit to making those comments?",
        "Which other England players are already out injured?",
        "When is that body expected to report back?",
    ],
)
def test_demonstratives_point_back_even_beside_a_name(question: str) -> None:
    assert is_followup(question)
    r = resolve(question, ["When did Yahoo hand its search over to Google?"])
    assert r.followup and "Yahoo" in r.carried
