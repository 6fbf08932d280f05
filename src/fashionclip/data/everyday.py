"""Everyday words of shoppers for what catalogs file under their own names: one place for both
query understanding (:mod:`fashionclip.index.understand`) and training captions
(``{article_everyday}``, :mod:`fashionclip.data.captions`).
"""

from __future__ import annotations

#: Everyday words -> (column, catalog values). Applied only where the catalog has that column
#: and value; words of 4+ letters are also targets of misspelling correction in search.
SYNONYMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lady": ("gender", ("Women",)),
    "woman": ("gender", ("Women",)),
    "female": ("gender", ("Women",)),
    "her": ("gender", ("Women",)),
    "man": ("gender", ("Men",)),
    "male": ("gender", ("Men",)),
    "gent": ("gender", ("Men",)),
    "him": ("gender", ("Men",)),
    "guy": ("gender", ("Men",)),
    "kid": ("gender", ("Boys", "Girls")),
    "child": ("gender", ("Boys", "Girls")),
    "children": ("gender", ("Boys", "Girls")),
    "teen": ("gender", ("Boys", "Girls")),
    "teenager": ("gender", ("Boys", "Girls")),
    "trainer": ("articleType", ("Sports Shoes",)),
    "sneaker": ("articleType", ("Casual Shoes", "Sports Shoes")),
    "running shoe": ("articleType", ("Sports Shoes",)),
    "tee": ("articleType", ("Tshirts",)),
    "t shirt": ("articleType", ("Tshirts",)),
    "tshirt": ("articleType", ("Tshirts",)),
    "polo": ("articleType", ("Tshirts",)),
    # WordNet files these under "shirt"; KAGL's polos, jerseys and tees are all Tshirts
    "tee shirt": ("articleType", ("Tshirts",)),
    "polo shirt": ("articleType", ("Tshirts",)),
    "jersey": ("articleType", ("Tshirts",)),
    "pant": ("articleType", ("Trousers",)),
    "denim": ("articleType", ("Jeans",)),
    "hoodie": ("articleType", ("Sweatshirts",)),
    "jumper": ("articleType", ("Sweaters",)),
    "cap": ("articleType", ("Caps",)),
    "fragrance": ("articleType", ("Perfume and Body Mist", "Deodorant")),
    "navy": ("baseColour", ("Navy Blue",)),
    "gray": ("baseColour", ("Grey",)),
    "golden": ("baseColour", ("Gold",)),
    "violet": ("baseColour", ("Purple",)),
    "office": ("usage", ("Formal",)),
    "party": ("usage", ("Party",)),
}
#: Synonyms that are also a material: "denim" alone means jeans, but in "denim jacket" or
#: "denim miniskirt" it says what the jacket is made of, so another value of the same column
#: named in the query wins over it.
MATERIAL_SYNONYMS = frozenset(["denim"])
#: Everyday names of clothes, shoes, bags and colours that catalogs file under other words ("coat" ->
#: Jackets, "pumps" -> Heels, "loafers" -> Casual Shoes, "panties" -> Briefs): neither the
#: model nor BM25 knew them ("winter coat" found earrings of the Winter season, "bowtie" and
#: "cotton panties" nothing relevant). Understood when written exactly, like the WordNet names,
#: never as a correction target: brand names sit an edit or two away ("Parina", "Tarika" ->
#: parka, "cont" -> coat, "Roggers" -> jogger).
EVERYDAY_NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "coat": ("articleType", ("Jackets",)),
    "overcoat": ("articleType", ("Jackets",)),
    "topcoat": ("articleType", ("Jackets",)),
    "parka": ("articleType", ("Jackets",)),
    "anorak": ("articleType", ("Jackets", "Rain Jacket")),
    "windcheater": ("articleType", ("Jackets", "Rain Jacket")),
    "windbreaker": ("articleType", ("Jackets", "Rain Jacket")),
    "bomber": ("articleType", ("Jackets",)),
    "puffer": ("articleType", ("Jackets",)),
    "raincoat": ("articleType", ("Rain Jacket", "Jackets")),
    "loafer": ("articleType", ("Casual Shoes", "Formal Shoes")),
    "moccasin": ("articleType", ("Casual Shoes",)),
    "brogue": ("articleType", ("Formal Shoes",)),
    "pump": ("articleType", ("Heels",)),
    "stiletto": ("articleType", ("Heels",)),
    "jogger": ("articleType", ("Track Pants", "Lounge Pants")),
    "sweatpant": ("articleType", ("Track Pants", "Lounge Pants")),
    "tote": ("articleType", ("Handbags",)),
    "satchel": ("articleType", ("Handbags", "Messenger Bag")),
    # session 14
    "panty": ("articleType", ("Briefs",)),
    "lingerie": ("articleType", ("Bra", "Briefs", "Camisoles")),
    "pyjama": ("articleType", ("Night suits", "Lounge Pants")),
    "kurta pyjama": ("articleType", ("Kurta Sets", "Kurtas")),  # a set, not nightwear
    "kurta pajama": ("articleType", ("Kurta Sets", "Kurtas")),
    "pajama": ("articleType", ("Night suits", "Lounge Pants")),
    "slack": ("articleType", ("Trousers",)),
    "miniskirt": ("articleType", ("Skirts",)),
    "gown": ("articleType", ("Dresses",)),
    "bermuda": ("articleType", ("Shorts",)),
    "wedge": ("articleType", ("Heels",)),
    "ballerina": ("articleType", ("Flats",)),
    "chappal": ("articleType", ("Flip Flops", "Sandals")),
    "beanie": ("articleType", ("Caps",)),
    "bowtie": ("articleType", ("Ties",)),
    "bow tie": ("articleType", ("Ties",)),
    "smartwatch": ("articleType", ("Watches",)),
    "cologne": ("articleType", ("Perfume and Body Mist",)),
    # colours KAGL files under other names ("wine" products are Purple or Maroon there); not
    # "indigo", "ivory", "aqua": brands in KAGL's names (Indigo Nation, Ivory Tag, Aqua Cat)
    "wine": ("baseColour", ("Burgundy", "Maroon", "Purple")),
    "crimson": ("baseColour", ("Red", "Maroon")),
    "scarlet": ("baseColour", ("Red",)),
    "camel": ("baseColour", ("Tan", "Brown", "Khaki")),
    "fuchsia": ("baseColour", ("Magenta", "Pink")),
    "lilac": ("baseColour", ("Lavender", "Purple")),
    "emerald": ("baseColour", ("Green", "Sea Green")),
    "mint": ("baseColour", ("Sea Green", "Green")),
    "turquoise": ("baseColour", ("Turquoise Blue",)),
    "multicolour": ("baseColour", ("Multi",)),
    "multicolor": ("baseColour", ("Multi",)),
    "multicoloured": ("baseColour", ("Multi",)),
    "multicolored": ("baseColour", ("Multi",)),
    # uses, seasons and kinds in everyday (and US) words
    "gym": ("usage", ("Sports",)),
    "workout": ("usage", ("Sports",)),
    "sportswear": ("usage", ("Sports",)),
    "winterwear": ("season", ("Winter",)),
    "summerwear": ("season", ("Summer",)),
    "sleepwear": ("subCategory", ("Loungewear and Nightwear",)),
    "jewelry": ("subCategory", ("Jewellery",)),
    "cosmetics": ("subCategory", ("Makeup", "Lips", "Eyes", "Nails")),
    "ankle boot": ("articleType", ("Booties",)),
    # misspellings that are English words too, so never corrected (``english_words``)
    "neckless": ("articleType", ("Necklace and Chains",)),
    "earing": ("articleType", ("Earrings",)),
}


def everyday_article_names(column: str = "articleType") -> dict[str, list[str]]:
    """Catalog value of ``column`` -> its everyday names (both tables, in their order):
    ``{"Jackets": ["coat", "overcoat", ...], "Sports Shoes": ["trainer", "sneaker", ...]}``."""
    names: dict[str, list[str]] = {}
    for word, (col, values) in [*SYNONYMS.items(), *EVERYDAY_NAMES.items()]:
        if col == column:
            for value in values:
                names.setdefault(value, []).append(word)
    return names
