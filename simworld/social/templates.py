"""Chat lines and posts written from templates (the rule policy's voice; no LLM).

A template speaker answers what the other side said: it opens about a film it loved or
hated lately (or asks for a tip in its favourite genre), replies to a film named with its
own rating of it (or, unseen, with how well its genres suit it), sometimes recommends one of
its own in return, and wraps up. Every choice comes from the chat's own random stream.
Titles are written as the catalog spells them, so the mention resolver reads them back.
"""

from __future__ import annotations

import re

import numpy as np

from simworld.agents.actions import DecisionMeta
from simworld.catalog import Catalog, Item
from simworld.social.chat import Participant, Reply, TurnContext
from simworld.social.state import DiaryEntry

OPEN_LOVED = (
    "Have you seen {title} yet? I watched it {when} and {feel_l}",
    "I finally got round to {title} {when}. {feel} It's {about}.",
    "Just finished {title} and I can't stop thinking about it. {feel}",
    "You have to watch {title}. {feel}",
    "Quick tip: {title}. {feel} It's {about}.",
)
OPEN_HATED = (
    "Word of warning: skip {title}. {feel}",
    "I tried {title} {when}. {feel}",
    "Did you ever see {title}? I watched it {when}. {feel}",
)
OPEN_ASK = (
    "Seen anything good lately? I'm in the mood for some {genre}.",
    "I need something to watch tonight. Any {genre} you'd recommend?",
    "Help me out: what's the best {genre} you've seen recently?",
)
SEEN_LOVED = (
    "Oh, I loved {title} too! {feel}",
    "Yes! {title} is brilliant. {feel}",
    "I've seen it. {feel} Great pick.",
)
SEEN_MIDDLING = (
    "I thought {title} was alright. Good in places, a bit long in others.",
    "I've seen {title}. It was fine, I wouldn't rush to see it again.",
)
SEEN_HATED = (
    "Really? I couldn't get into {title} at all. {feel}",
    "Funny, {title} didn't work for me. {feel}",
)
UNSEEN_KEEN = (
    "I haven't seen {title} yet, but {genre} is right up my street. It's going on my list.",
    "Not yet! {genre} is my kind of thing, so I'll watch it this week.",
    "Ooh, {title} sounds good. Adding it to my list.",
)
UNSEEN_COOL = (
    "Hmm, {genre} isn't really my thing, but I might give {title} a go.",
    "Not sure {title} is for me, I'm not big on {genre}.",
)
UNSEEN_WARNED = (
    "Good to know, I'll steer clear of {title}.",
    "Thanks for the warning. {title} is off my list then.",
)
COUNTER = (
    " If you're after something else, try {title}. {feel}",
    " Have you seen {title}, by the way? {feel}",
    " Oh, and {title} is worth a look. {feel}",
)
ANSWER_ASK = (
    "Try {title}. {feel} It's {about}.",
    "{title_cap} was great. {feel}",
)
ANSWER_ASK_OTHER = (
    "Not much {genre} lately, but I loved {title}. {feel}",
    "No {genre}, sorry, but {title} was great. {feel}",
)
ANSWER_ASK_NONE = (
    "Can't think of any {genre} lately, sorry. I've mostly been watching {mine}.",
    "Nothing comes to mind for {genre}, I'm afraid.",
)
CLOSE = (
    "Thanks, I'll let you know what I think!",
    "Great, talk soon!",
    "Ha, fair enough. Enjoy your film night!",
    "Cheers, speak later.",
)
SMALL_TALK = (
    "Ha, true. What else have you been watching?",
    "Same here, honestly. Anything else good?",
)

# what people say about a film they liked / disliked, by its first genre (and in general)
OPINION_LOVED = {
    "Comedy": ("I laughed the whole way through.", "Funnier than I expected.", "Such a feel-good watch."),
    "Horror": ("I slept with the lights on after that.", "Properly scary.", "That tension never lets up."),
    "Drama": ("It really got to me.", "The acting is incredible.", "It stayed with me all day."),
    "Thriller": ("Edge of my seat the whole time.", "So tense, I forgot to breathe."),
    "Sci-Fi": ("The ideas in it are wild.", "Gorgeous and clever at the same time."),
    "Romance": ("Such a lovely story.", "I was a bit teary at the end, not going to lie."),
    "Animation": ("Beautiful to look at.", "Not just for kids, honestly."),
    "Documentary": ("I learned so much.", "Fascinating from start to finish."),
    "Action": ("The action scenes are incredible.", "Pure adrenaline."),
    "Adventure": ("A proper adventure.", "Great fun from start to finish."),
    "War": ("Hard to watch but powerful.", "It really puts things in perspective."),
    "Western": ("A proper classic western.", "Those landscapes!"),
    "Musical": ("The songs are still in my head.", "I wanted to dance afterwards."),
    "Crime": ("Clever, twisty and tense.", "Brilliantly plotted."),
    "Mystery": ("It kept me guessing till the end.", "I did not see that twist coming."),
    "Fantasy": ("Such an imaginative world.", "Pure magic."),
    "Children": ("Fun for all ages.", "Watched it with my family, everyone loved it."),
    "Film-Noir": ("So much atmosphere.", "Moody in the best way."),
    "": ("The ending got me.", "One of the best things I've seen in ages.", "I'd watch it again tomorrow."),
}
OPINION_HATED = ("It dragged.", "I kept checking my phone.", "The ending ruined it for me.",
                 "I just didn't care about anyone in it.", "Way too long.")
OPINION_MIDDLING = ("Good in places, a bit long in others.", "Fine, but I won't rush to see it again.")

POST_LOVED = (
    "Just watched {title}. {stars} {feel}",
    "{title_cap}. {feel} Highly recommend.",
    "Film of the week for me: {title}. It's {about}. {feel}",
    "If you haven't seen {title} yet, do. {feel}",
)
POST_HATED = (
    "Watched {title}. {stars} {feel} Can't recommend it.",
    "Skip {title}. {feel}",
    "Not my evening: {title}. {feel}",
)
REPOST = (
    "Agree with {name} on this one.",
    "Adding {title} to my list.",
    "Seconding this.",
    "Been meaning to watch {title}.",
)


LEADING_WORDS = {"A", "An", "The", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Ten", "One"}


def about(item: Item) -> str:
    """What the film is about, as someone would say it: "the one where a shark ...". From
    the catalog's one-liner when it starts like a plain clause, else its genre and year."""
    desc = (item.description or "").strip().rstrip(".")
    first_word = desc.split(" ", 1)[0]
    if desc and first_word in LEADING_WORDS:
        clause = desc.split(". ")[0]
        if len(clause) > 110:  # the longest run of whole comma-separated parts that fits
            parts, clause = clause.split(", "), ""
            for part in parts:
                if len(clause) + len(part) + 2 > 110:
                    break
                clause = f"{clause}, {part}" if clause else part
        if len(clause) >= 25:
            return "the one where " + clause[0].lower() + clause[1:]
    genre = (item.genres[0] if item.genres else "film").lower()
    article = "an" if genre[0] in "aeiou" else "a"
    return f"{article} {genre} film from {item.year}" if item.year else f"{article} {genre} film"


def genre_word(item: Item) -> str:
    return (item.genres[0] if item.genres else "film").lower().replace("sci-fi", "sci-fi")


def stars(rating: float) -> str:
    return f"{rating:g}/5."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:1].isupper() and not text[1:2].isupper() else text


def _pick(options: tuple[str, ...], rng: np.random.Generator, avoid: str = "") -> str:
    """One of the options; those already said (in `avoid`) only when nothing else is left."""
    fresh = tuple(o for o in options if o.split("{", 1)[0] not in avoid) if avoid else options
    options = fresh or options
    return options[int(rng.integers(len(options)))]


class TemplateSpeaker:
    """Chat lines from templates, answering the other side's last message."""

    name = "rule"

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._said = ""  # the chat so far (set per message; speakers of one round run one at a time)

    async def say(self, ctx: TurnContext) -> Reply:
        return self.say_now(ctx)

    def say_now(self, ctx: TurnContext) -> Reply:
        reply = self._reply(ctx)
        titles = tuple(item.title for item in self.catalog.items if item.title in reply.text)
        return Reply(sentences(reply.text, titles), reply.done, reply.intent, reply.meta)

    def _reply(self, ctx: TurnContext) -> Reply:
        rng, meta = ctx.rng, DecisionMeta(policy="rule")
        self._said = " ".join(t.text for t in ctx.turns)  # what the chat already said: not again
        if not ctx.turns:
            return self._open(ctx)
        last = ctx.turns[-1]
        last_intent = ctx.intents[-1] if ctx.intents else None
        mine = {i for t in ctx.turns if t.speaker == ctx.me.agent_id for i in t.mentions}
        discussed = {i for t in ctx.turns for i in t.mentions}
        new = [i for i in last.mentions if i not in mine]  # films the other brought up (not mine repeated)
        closing = ctx.number >= ctx.max_turns - 1 or (ctx.number >= 2 and rng.random() < ctx.end_chance)
        if closing or last.done or (not new and last_intent != "ask" and ctx.number >= 2):
            return Reply(_pick(CLOSE, rng, self._said), done=True, intent="close", meta=meta)
        if new:
            item = self.catalog.get(new[0])
            text = self._respond(ctx, item, warned=last_intent == "warn")
            self._said += " " + text
            counter = self._counter(ctx, discussed) if ctx.number + 2 < ctx.max_turns and rng.random() < 0.6 else ""
            return Reply(text + counter, intent="recommend" if counter else "respond", meta=meta)
        if last_intent == "ask":
            return self._answer_ask(ctx, discussed)
        return Reply(_pick(SMALL_TALK, rng), intent="ask", meta=meta)

    # -- the moves
    def _fields(self, item: Item, me: Participant, now: int, rng: np.random.Generator) -> dict[str, str]:
        entry = next((e for e in reversed(me.diary) if e.item_id == item.item_id), None)
        rating = me.watched.get(item.item_id)
        feel = opinion(item, rating, entry.feeling if entry else "", rng, self._said)
        when = "last night" if entry and now - entry.round <= 1 else "the other day" if entry else "a while ago"
        return {"title": item.title, "title_cap": item.title[:1].upper() + item.title[1:], "feel": feel,
                "feel_l": _lower_first(feel), "when": when, "about": about(item), "genre": genre_word(item)}

    def _open(self, ctx: TurnContext) -> Reply:
        me, rng = ctx.me, ctx.rng
        recent = sorted(me.diary, key=lambda e: (-e.round, e.item_id))
        if not recent:  # nothing watched in the run yet: what it rated before (a MovieLens history)
            known = sorted(((i, r) for i, r in me.watched.items() if i in self.catalog),
                           key=lambda ir: (-abs(ir[1] - 3.0), ir[0]))
            recent = [DiaryEntry(-1, i, r, "") for i, r in known[:6]]
        loved = [e for e in recent if e.rating >= 4.0]
        hated = [e for e in recent if e.rating <= 2.0]
        meta = DecisionMeta(policy="rule")
        if loved and (not hated or rng.random() < 0.75):
            item = self.catalog.get(loved[0].item_id)
            text = _pick(OPEN_LOVED, rng).format(**self._fields(item, me, ctx.round, rng))
            return Reply(text, intent="recommend", meta=meta)
        if hated:
            item = self.catalog.get(hated[0].item_id)
            text = _pick(OPEN_HATED, rng).format(**self._fields(item, me, ctx.round, rng))
            return Reply(text, intent="warn", meta=meta)
        genre = (me.persona.top_genres(1) or ["drama"])[0].lower()
        return Reply(_pick(OPEN_ASK, rng).format(genre=genre), intent="ask", meta=meta)

    def _respond(self, ctx: TurnContext, item: Item, warned: bool) -> str:
        me, rng = ctx.me, ctx.rng
        fields = self._fields(item, me, ctx.round, rng)
        rating = me.watched.get(item.item_id)
        if rating is not None:
            options = SEEN_LOVED if rating >= 4 else SEEN_HATED if rating <= 2 else SEEN_MIDDLING
            return _pick(options, rng, self._said).format(**fields)
        if warned:
            return _pick(UNSEEN_WARNED, rng).format(**fields)
        genres = self.catalog.genre_matrix[self.catalog.row(item.item_id)]
        keen = float(me.taste @ genres) >= 0.45
        return _pick(UNSEEN_KEEN if keen else UNSEEN_COOL, rng).format(**fields)

    def _counter(self, ctx: TurnContext, discussed: set[int]) -> str:
        me = ctx.me
        best = [e for e in sorted(me.diary, key=lambda e: (-e.rating, -e.round, e.item_id))
                if e.rating >= 4.0 and e.item_id not in discussed]
        if not best:
            return ""
        item = self.catalog.get(best[0].item_id)
        return _pick(COUNTER, ctx.rng).format(**self._fields(item, me, ctx.round, ctx.rng))

    def _answer_ask(self, ctx: TurnContext, discussed: set[int]) -> Reply:
        me, rng = ctx.me, ctx.rng
        meta = DecisionMeta(policy="rule")
        asked = _asked_genre(ctx.turns[-1].text, self.catalog.genres)
        liked = sorted(((r, i) for i, r in me.watched.items() if r >= 4.0 and i not in discussed and i in self.catalog),
                       key=lambda ri: (-ri[0], ri[1]))
        fitting = [i for _, i in liked if asked is None or asked in self.catalog.get(i).genres]
        if fitting or liked:
            item = self.catalog.get(fitting[0] if fitting else liked[0][1])
            options = ANSWER_ASK if fitting else ANSWER_ASK_OTHER
            fields = self._fields(item, me, ctx.round, rng) | {"genre": (asked or "that").lower()}
            return Reply(_pick(options, rng).format(**fields), intent="recommend", meta=meta)
        mine = ", ".join(g.lower() for g in me.persona.top_genres(2)) or "a bit of everything"
        text = _pick(ANSWER_ASK_NONE, rng).format(genre=(asked or "that").lower(), mine=mine)
        return Reply(text, intent="respond", meta=meta)


def opinion(item: Item, rating: float | None, feeling: str, rng: np.random.Generator, said: str = "") -> str:
    """What the speaker says of a film it rated: its own line from when it watched (half the
    time), else a remark that fits the rating and the film's genre."""
    if rating is None:
        return _default_feeling(None)
    if feeling and rng.random() < 0.5 and feeling not in said and reads_well(feeling):
        return feeling
    if rating >= 4:
        options = OPINION_LOVED.get(item.genres[0] if item.genres else "", ()) + OPINION_LOVED[""]
    elif rating <= 2:
        options = OPINION_HATED
    else:
        options = OPINION_MIDDLING
    return _pick(options, rng, said)


def reads_well(feeling: str) -> bool:
    """A feeling worth repeating to a friend: a phrase of 4+ words with no digits (a small
    model's "1.5 stars", "{" or a bare title are not)."""
    words = feeling.split()
    return len(words) >= 4 and not re.search(r"[\d{}\[\]]", feeling)


def sentences(text: str, titles: tuple[str, ...] = ()) -> str:
    """Each sentence starts with a capital letter ("Not yet! Comedy is my kind of thing"); a
    title's own punctuation ("Safety Last! the other day") ends no sentence."""
    marks = {}
    for n, title in enumerate(sorted(set(titles), key=len, reverse=True)):
        if title and title in text:
            mark = f"\x00{n}\x00"
            text = text.replace(title, mark)
            marks[mark] = title
    text = re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    for mark, title in marks.items():
        text = text.replace(mark, title)
    return text


def _asked_genre(text: str, genres: tuple[str, ...]) -> str | None:
    low = text.lower()
    for g in genres:
        if g.lower() in low:
            return g
    return None


def _default_feeling(rating: float | None) -> str:
    if rating is None:
        return "People keep talking about it."
    if rating >= 4:
        return "Really enjoyed it."
    if rating <= 2:
        return "Not for me."
    return "It was fine."


def post_text(item: Item, rating: float, feeling: str, rng: np.random.Generator) -> str:
    feel = opinion(item, rating, feeling, rng)
    fields = {"title": item.title, "title_cap": item.title[:1].upper() + item.title[1:], "stars": stars(rating),
              "feel": feel, "feel_l": _lower_first(feel), "about": about(item)}
    return sentences(_pick(POST_LOVED if rating >= 3.5 else POST_HATED, rng).format(**fields), (item.title,))


def repost_text(item: Item, author_name: str, rng: np.random.Generator) -> str:
    return _pick(REPOST, rng).format(title=item.title, name=author_name.split()[0])
