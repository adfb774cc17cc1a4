"""The vocabulary of the embedded demo shop: product types, brands, colors and query words.

Product titles are written with a type's `noun`; shoppers often search with one of its
`query_words` instead ("trainers" for running shoes, "couch" for a sofa), which share few or no
words with the titles. Colors and genders also have query-side spellings ("gray", "ladies").
"""

from __future__ import annotations

import dataclasses

WOMEN, MEN, UNISEX, KIDS = "women", "men", "unisex", "kids"
APPAREL_GENDERS = (WOMEN, MEN, UNISEX, KIDS)
ADULT_GENDERS = (WOMEN, MEN, UNISEX)


@dataclasses.dataclass(frozen=True)
class ProductType:
    """One product type of the demo catalog.

    Args:
        noun: how titles name it, also the `product_type` value.
        query_words: other ways shoppers search for it.
        attributes: attributes a product of this type may have (used in titles and queries).
        genders: the genders it is sold for; empty for products without one.
        median_price: median price in the shop's currency.
        group: products of the same group are partially relevant to each other's queries.
    """

    noun: str
    query_words: tuple[str, ...]
    attributes: tuple[str, ...]
    genders: tuple[str, ...]
    median_price: float
    group: str


PRODUCT_TYPES = (
    ProductType(
        "running shoes",
        ("trainers", "jogging sneakers", "runners"),
        ("lightweight", "cushioned", "breathable"),
        APPAREL_GENDERS,
        90.0,
        "footwear",
    ),
    ProductType(
        "hiking boots",
        ("trekking boots", "walking boots", "mountain boots"),
        ("waterproof", "leather", "insulated"),
        APPAREL_GENDERS,
        140.0,
        "footwear",
    ),
    ProductType(
        "canvas sneakers",
        ("plimsolls", "low top shoes", "casual kicks"),
        ("slip-on", "classic", "vegan"),
        APPAREL_GENDERS,
        55.0,
        "footwear",
    ),
    ProductType(
        "hooded sweatshirt",
        ("hoodie", "zip hoodie", "pullover hoodie"),
        ("fleece", "organic cotton", "oversized"),
        APPAREL_GENDERS,
        50.0,
        "tops",
    ),
    ProductType(
        "t-shirt",
        ("tee", "tshirt", "crew neck top"),
        ("organic cotton", "slim fit", "graphic"),
        APPAREL_GENDERS,
        20.0,
        "tops",
    ),
    ProductType(
        "rain jacket",
        ("raincoat", "waterproof coat", "rain shell"),
        ("packable", "hooded", "breathable"),
        APPAREL_GENDERS,
        110.0,
        "outerwear",
    ),
    ProductType(
        "parka",
        ("winter coat", "puffer coat", "warm coat"),
        ("insulated", "hooded", "down-filled"),
        APPAREL_GENDERS,
        180.0,
        "outerwear",
    ),
    ProductType(
        "denim jeans",
        ("jeans", "denim pants", "blue jeans"),
        ("slim fit", "stretch", "relaxed fit"),
        APPAREL_GENDERS,
        60.0,
        "bottoms",
    ),
    ProductType(
        "summer dress",
        ("sundress", "frock", "maxi dress"),
        ("floral", "linen", "sleeveless"),
        (WOMEN, KIDS),
        65.0,
        "bottoms",
    ),
    ProductType(
        "backpack",
        ("rucksack", "daypack", "school bag"),
        ("waterproof", "laptop", "lightweight"),
        ADULT_GENDERS,
        70.0,
        "accessories",
    ),
    ProductType(
        "wristwatch",
        ("watch", "timepiece", "analog watch"),
        ("leather strap", "waterproof", "stainless steel"),
        ADULT_GENDERS,
        150.0,
        "accessories",
    ),
    ProductType(
        "sunglasses",
        ("shades", "uv glasses", "aviators"),
        ("polarized", "round", "oversized"),
        ADULT_GENDERS,
        80.0,
        "accessories",
    ),
    ProductType(
        "over-ear headphones",
        ("headset", "noise cancelling cans", "bluetooth headset"),
        ("wireless", "noise cancelling", "foldable"),
        (),
        120.0,
        "electronics",
    ),
    ProductType(
        "desk lamp",
        ("reading light", "study light", "office light"),
        ("led", "dimmable", "adjustable"),
        (),
        40.0,
        "home",
    ),
    ProductType(
        "sofa",
        ("couch", "settee", "loveseat"),
        ("leather", "velvet", "three-seater"),
        (),
        800.0,
        "furniture",
    ),
    ProductType(
        "coffee table",
        ("cocktail table", "living room table", "centre table"),
        ("oak", "glass top", "round"),
        (),
        200.0,
        "furniture",
    ),
    ProductType(
        "nightstand",
        ("bedside table", "bedside cabinet", "night table"),
        ("oak", "two-drawer", "compact"),
        (),
        120.0,
        "furniture",
    ),
    ProductType(
        "yoga mat",
        ("exercise mat", "fitness mat", "pilates mat"),
        ("non-slip", "extra thick", "eco-friendly"),
        (),
        35.0,
        "fitness",
    ),
    ProductType(
        "water bottle",
        ("drinking flask", "hydration flask", "sports flask"),
        ("insulated", "bpa-free", "leak-proof"),
        (),
        25.0,
        "fitness",
    ),
)

BRANDS = (
    "Nordic Trail",
    "Urban Stride",
    "Peak Form",
    "Blue Harbor",
    "Evergreen",
    "Solstice",
    "Ironwood",
    "Luma",
    "Kestrel",
    "Maple & Pine",
    "Northwind",
    "Sable",
    "Coastline",
    "Vantage",
    "Arbor Home",
    "Pulse",
    "Terra Goods",
    "Halcyon",
    "Brightside",
    "Redwood Outfitters",
)

# Title spelling -> spellings shoppers use in queries (the first is the title spelling).
COLORS = {
    "black": ("black",),
    "white": ("white", "off white"),
    "navy": ("navy", "dark blue"),
    "olive": ("olive", "khaki green"),
    "grey": ("grey", "gray"),
    "red": ("red",),
    "blue": ("blue",),
    "beige": ("beige", "tan"),
    "pink": ("pink", "rose"),
    "green": ("green",),
    "brown": ("brown", "chocolate"),
}

# How titles mark the gender, and how queries ask for it.
GENDER_TITLE = {WOMEN: "women's", MEN: "men's", UNISEX: "unisex", KIDS: "kids'", "": ""}
GENDER_QUERY_PREFIX = {
    WOMEN: ("women's", "womens", "ladies"),
    MEN: ("men's", "mens"),
    KIDS: ("kids", "children's", "boys"),
}
GENDER_QUERY_SUFFIX = {WOMEN: ("for women",), MEN: ("for men",), KIDS: ("for kids",)}

# Words that carry no product information but appear in real queries.
QUERY_FILLERS = ("cheap", "best", "buy", "sale", "new")

# Words ignored by the lexical (word-overlap) score.
STOPWORDS = frozenset({"for", "the", "a", "an", "and", "with", "of", "in", "s"})
