"""Prints stdin as banner text, a stand-in for figlet where it is not installed.

Python standard library only. Letters are shown in capitals; accents are dropped, and
characters the font lacks print as `?`. Lines wider than 80 columns wrap.
"""
import sys
import unicodedata

FONT = {
    "A": " ### /#   #/#####/#   #/#   #", "B": "#### /#   #/#### /#   #/#### ",
    "C": " ####/#    /#    /#    / ####", "D": "#### /#   #/#   #/#   #/#### ",
    "E": "#####/#    /#### /#    /#####", "F": "#####/#    /#### /#    /#    ",
    "G": " ####/#    /#  ##/#   #/ ####", "H": "#   #/#   #/#####/#   #/#   #",
    "I": "###/ # / # / # /###", "J": "  ###/    #/    #/#   #/ ### ",
    "K": "#   #/#  # /###  /#  # /#   #", "L": "#    /#    /#    /#    /#####",
    "M": "#   #/## ##/# # #/#   #/#   #", "N": "#   #/##  #/# # #/#  ##/#   #",
    "O": " ### /#   #/#   #/#   #/ ### ", "P": "#### /#   #/#### /#    /#    ",
    "Q": " ### /#   #/# # #/#  # / ## #", "R": "#### /#   #/#### /#  # /#   #",
    "S": " ####/#    / ### /    #/#### ", "T": "#####/  #  /  #  /  #  /  #  ",
    "U": "#   #/#   #/#   #/#   #/ ### ", "V": "#   #/#   #/#   #/ # # /  #  ",
    "W": "#   #/#   #/# # #/## ##/#   #", "X": "#   #/ # # /  #  / # # /#   #",
    "Y": "#   #/ # # /  #  /  #  /  #  ", "Z": "#####/   # /  #  / #   /#####",
    "0": " ### /#  ##/# # #/##  #/ ### ", "1": " # /## / # / # /###",
    "2": " ### /#   #/  ## / #   /#####", "3": "#### /    #/ ### /    #/#### ",
    "4": "#  # /#  # /#####/   # /   # ", "5": "#####/#    /#### /    #/#### ",
    "6": " ### /#    /#### /#   #/ ### ", "7": "#####/    #/   # /  #  /  #  ",
    "8": " ### /#   #/ ### /#   #/ ### ", "9": " ### /#   #/ ####/    #/ ### ",
    " ": "   /   /   /   /   ", "!": "#/#/#/ /#", "?": " ### /#   #/  ## /     /  #  ",
    ".": " / / / /#", ",": "  /  /  / #/# ", "-": "    /    /####/    /    ",
    "'": "#/#/ / / ", ":": " /#/ /#/ ",
}
WIDTH = 80


def glyph(char):
    """The rows of `char` in the font, without accents, as a capital, or as `?`."""
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    return FONT.get(base.upper(), FONT["?"]).split("/")


def banner(line):
    """The banner rows for one line of text, wrapped at WIDTH columns."""
    blocks, rows = [], None
    for char in line:
        shape = glyph(char)
        if rows is not None and len(rows[0]) + 1 + len(shape[0]) > WIDTH:
            blocks.append(rows)
            rows = None
        rows = shape if rows is None else [row + " " + part for row, part in zip(rows, shape)]
    if rows is not None:
        blocks.append(rows)
    return [row.rstrip() for block in blocks for row in block + [""]]


def main():
    text = sys.stdin.buffer.read().decode("utf-8", "replace")
    for line in text.splitlines():
        if line.strip():
            print("\n".join(banner(line.strip())))


if __name__ == "__main__":
    main()
