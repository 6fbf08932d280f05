"""How light a colour name is: its CIE L* from a reference sRGB value, and a tone word.

Captions can then say "a dark shirt" or "a light dress" (the words people use for "like this,
but darker") from a catalog's colour column, without anyone labelling tones. The reference values
are CSS Color 4 named colours where CSS has the name, otherwise a common hex value for the fashion
name (marked). Names with no single colour (Multi, Metallic) have none.
"""

from __future__ import annotations

#: Reference sRGB of KAGL's colour names (lower case). "~": not a CSS name, a common value.
COLOUR_SRGB: dict[str, str] = {
    "black": "#000000",
    "white": "#ffffff",
    "blue": "#0000ff",
    "brown": "#a52a2a",
    "grey": "#808080",
    "red": "#ff0000",
    "green": "#008000",
    "pink": "#ffc0cb",
    "navy blue": "#000080",  # CSS navy
    "purple": "#800080",
    "silver": "#c0c0c0",
    "yellow": "#ffff00",
    "beige": "#f5f5dc",
    "gold": "#ffd700",
    "maroon": "#800000",
    "orange": "#ffa500",
    "olive": "#808000",
    "cream": "#fffdd0",  # ~
    "steel": "#71797e",  # ~ steel grey
    "charcoal": "#36454f",  # ~
    "peach": "#ffdab9",  # CSS peachpuff
    "off white": "#faf9f6",  # ~
    "skin": "#e3bc9a",  # ~
    "lavender": "#e6e6fa",
    "grey melange": "#a9a9a9",  # ~ CSS darkgray
    "khaki": "#c3b091",  # ~ (CSS khaki #f0e68c is paler)
    "magenta": "#ff00ff",
    "teal": "#008080",
    "tan": "#d2b48c",
    "mustard": "#ffdb58",  # ~
    "bronze": "#cd7f32",  # ~
    "copper": "#b87333",  # ~
    "turquoise blue": "#40e0d0",  # CSS turquoise
    "rust": "#b7410e",  # ~
    "burgundy": "#800020",  # ~
    "coffee brown": "#6f4e37",  # ~
    "mauve": "#e0b0ff",  # ~
    "rose": "#ff007f",  # ~
    "nude": "#e3bc9a",  # ~
    "sea green": "#2e8b57",
    "mushroom brown": "#bdaca3",  # ~
    "taupe": "#483c32",  # ~
    "lime green": "#32cd32",
    "fluorescent green": "#08ff08",  # ~
}

#: CIE L* (0 black .. 100 white) below which a colour is "dark", above which it is "light"; the
#: darkest and lightest 30% of the scale, fixed before any use (mid tones get no tone word).
DARK_BELOW = 30.0
LIGHT_ABOVE = 70.0


def lightness(hex_rgb: str) -> float:
    """CIE L* of an sRGB colour ``#rrggbb`` (D65)."""
    channels = [int(hex_rgb[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    y = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 116 * y ** (1 / 3) - 16 if y > (6 / 29) ** 3 else y * (29 / 3) ** 3


def colour_tone(name: str) -> str:
    """``"dark"``, ``"light"`` or ``""`` (mid tone, or a name with no reference colour)."""
    hex_rgb = COLOUR_SRGB.get(" ".join(str(name).lower().split()))
    if hex_rgb is None:
        return ""
    value = lightness(hex_rgb)
    if value < DARK_BELOW:
        return "dark"
    if value > LIGHT_ABOVE:
        return "light"
    return ""
