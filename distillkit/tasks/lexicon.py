"""The embedded task's lexicon: topic nouns and contexts, adjectives by topic and polarity, intensifiers,
hedges, negators, fixed mild phrases, predicates, prefixes and suffixes. Data only; the grammar that
combines them is in ``distillkit/synthetic.py``. Changing any entry changes every generated example (and so
every cache key built from the embedded data)."""

from __future__ import annotations

# Each topic's domain: topics of one domain share generic nouns (and are the nearer confusions of the embedded
# classification task); text augmentation keeps a noun within its domain.
DOMAINS: dict[str, str] = {"food": "hospitality", "travel": "hospitality", "movies": "media", "music": "media"}

_NOUNS = {
    "food": [
        "pasta", "soup", "steak", "curry", "dessert", "salad", "pizza", "burger", "noodle soup",
        "bread", "sushi", "sauce", "risotto", "dumpling platter", "omelette", "lasagna", "chowder",
        "cheesecake", "brisket", "tasting menu", "espresso", "pancake stack", "fish stew", "kebab",
        "tiramisu", "ramen", "paella", "roast chicken", "breakfast", "lunch special",
    ],
    "travel": [
        "hotel", "room", "flight", "beach", "resort", "tour", "suite", "cruise", "hostel", "balcony",
        "train ride", "ferry", "pool", "lodge", "guesthouse", "airline", "city tour", "spa",
        "campsite", "boat trip", "minibar", "shuttle bus", "check-in", "layover", "cabin",
        "rental car", "hiking trail", "old town", "seaside villa", "ski resort",
    ],
    "movies": [
        "film", "movie", "plot", "script", "sequel", "cast", "screenplay", "villain", "trailer",
        "documentary", "thriller", "comedy", "remake", "cinematography", "lead actor", "director",
        "second act", "final scene", "dialogue", "special effects", "murder mystery", "biopic",
        "horror flick", "animated feature", "romcom", "car chase", "love story", "twist",
        "war epic", "courtroom drama",
    ],
    "music": [
        "album", "song", "band", "singer", "chorus", "lyrics", "concert", "track", "guitarist",
        "melody", "drummer", "vocals", "record", "playlist", "ballad", "encore", "bassline",
        "opera", "string quartet", "choir", "debut single", "guitar solo", "piano sonata",
        "rap verse", "setlist", "live set", "b-side", "symphony", "duet", "mixtape",
    ],
}
# Nouns shared by both topics of a domain: on their own they leave the topic open.
_GENERIC_NOUNS = {
    "hospitality": ["place", "staff", "service", "experience", "location", "price", "owner", "booking"],
    "media": ["show", "performance", "production", "soundtrack", "artist", "premiere", "release", "finale"],
}
_CONTEXTS = {
    "food": [
        "at the new bistro", "at the corner cafe", "at that noodle bar", "from the food truck",
        "at the steakhouse", "at the bakery downtown", "at the sushi counter", "at the diner",
        "at the family trattoria", "at the vegan kitchen",
    ],
    "travel": [
        "at the seaside resort", "on our trip to lisbon", "at the mountain lodge",
        "during our stay in rome", "on the overnight train", "at the airport hotel",
        "on our honeymoon in bali", "during the weekend in prague", "on the island", "in the alps",
    ],
    "movies": [
        "at the cinema", "at the film festival", "on the big screen", "from the new trilogy",
        "on the streaming service", "at the drive-in", "at the multiplex", "from the studio",
        "at the matinee", "at the midnight screening",
    ],
    "music": [
        "at the festival", "on the new record", "at the jazz club", "on their latest album",
        "at the stadium gig", "on the radio", "at the opera house", "at the open-air stage",
        "on the vinyl edition", "at the rock bar",
    ],
}
_GENERIC_CONTEXTS = {
    "hospitality": ["on our last visit", "in the city centre", "near the station", "on a busy saturday"],
    "media": ["everyone talked about", "that came out last month", "from last season", "on opening night"],
}
_NOUN_MODIFIERS = ["new", "famous", "local", "latest", "popular", "classic", "little", "much-hyped", "recommended"]

_GENERIC_ADJ = {
    +1: ["good", "great", "excellent", "wonderful", "fantastic", "lovely", "impressive", "superb",
         "brilliant", "enjoyable", "pleasant", "outstanding"],
    -1: ["bad", "terrible", "awful", "poor", "disappointing", "dreadful", "weak", "dull", "horrible",
         "annoying", "lousy", "forgettable"],
}
# Extreme adjectives are never hedged ("somewhat superb") and take only a few intensifiers.
_EXTREME_ADJ = frozenset(["great", "excellent", "wonderful", "fantastic", "superb", "brilliant",
                          "outstanding", "terrible", "awful", "dreadful", "horrible"])
_TOPIC_ADJ = {
    "food": {+1: ["delicious", "tasty", "flavorful", "fresh", "tender", "crispy"],
             -1: ["bland", "greasy", "stale", "soggy", "overcooked", "oversalted"]},
    "travel": {+1: ["spacious", "cozy", "scenic", "relaxing", "spotless", "comfortable"],
               -1: ["cramped", "noisy", "dirty", "overpriced", "shabby", "crowded"]},
    "movies": {+1: ["gripping", "moving", "hilarious", "suspenseful", "clever", "heartfelt"],
               -1: ["boring", "predictable", "clumsy", "slow", "confusing", "cheesy"]},
    "music": {+1: ["catchy", "soulful", "melodic", "energetic", "haunting", "groovy"],
              -1: ["repetitive", "tuneless", "shrill", "muddy", "off-key", "grating"]},
}
_TOPIC_VERB = {"food": "tasted", "travel": "felt", "movies": "looked", "music": "sounded"}
_NEVER_VERB = {"food": "tasted", "travel": "experienced", "movies": "seen", "music": "heard"}
_INTENSIFIERS = ["very", "really", "extremely", "incredibly", "truly", "absolutely", "remarkably",
                 "so", "genuinely", "utterly"]
_EXTREME_INTENSIFIERS = ["really", "truly", "absolutely", "simply", "utterly"]
_HEDGES = ["somewhat", "a bit", "a little", "kind of", "sort of", "slightly", "fairly", "rather",
           "mildly", "moderately", "a tad"]
_NEGATORS = ["not", "never", "not at all", "by no means", "in no way", "not remotely", "hardly ever"]
_COMPARATIVE = {+1: ["better", "finer", "nicer", "more enjoyable"], -1: ["worse", "poorer", "sadder", "more tiresome"]}
# Mild phrases: (phrase, lean). lean 0 = neutral.
_MILD_FIXED = {
    +1: ["not bad", "not terrible", "decent", "alright", "not too bad", "pretty decent", "not awful"],
    -1: ["not great", "not amazing", "nothing special", "underwhelming", "a bit of a letdown",
         "not that good", "not perfect"],
    0: ["okay", "fine", "average", "passable", "so-so", "acceptable", "ordinary", "mixed"],
}
_PREDICATES = {
    +1: ["did not disappoint", "never disappoints", "could not have been better",
         "exceeded our expectations", "won us over", "was worth every penny", "was a real treat",
         "was not a waste of time", "blew us away", "deserves every award", "left nothing to be desired"],
    -1: ["did not impress", "failed to impress", "could not have been worse",
         "left a lot to be desired", "let us down", "was a waste of money", "was not worth the money",
         "was a complete waste of time", "never worked for us", "fell flat", "deserves no award"],
}
_PREFIXES = ["honestly ,", "overall ,", "to be fair ,", "in my opinion ,", "all in all ,",
             "last weekend ,", "i have to say", "frankly ,", "well ,", "for what it is worth ,",
             "to be honest ,", "on the whole ,", "as a regular ,", "after all the hype ,"]
_SUFFIXES = ["last night", "on our anniversary", "with my friends", "this time", "on sunday",
             "for the second time", "as usual", "once again", "with the kids", "after work"]
_RECOMMEND = {
    +1: ["i would definitely recommend {np}", "i would not hesitate to recommend {np}",
         "do not miss {np}", "you have to check out {np}", "i would happily go back for {np}",
         "i cannot recommend {np} enough"],
    -1: ["i would not recommend {np}", "i would hesitate to recommend {np}", "do not bother with {np}",
         "avoid {np} at all costs", "i would never go back for {np}", "i cannot recommend {np}"],
}
