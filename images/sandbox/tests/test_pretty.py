"""IPython's layout of shown containers (codebox_pretty)."""

from codebox_pretty import pretty


class Multiline:
    def __repr__(self):
        return "first\n  second"


def test_what_fits_stays_on_one_line():
    assert pretty((1, "a", [2, 3])) == "(1, 'a', [2, 3])"
    assert pretty((1,)) == "(1,)"
    assert pretty({}) == "{}"


def test_what_does_not_fit_breaks_after_each_element_indented_under_the_first():
    words = tuple("word%02d" % n for n in range(12))
    assert pretty(words) == "(" + ",\n ".join(repr(w) for w in words) + ")"
    assert pretty([list(range(30)), 1]).startswith("[[0,\n  1,\n  2,")


def test_a_multiline_element_keeps_its_lines_indented_where_it_starts():
    assert pretty((Multiline(), "x" * 80)) == "(first\n   second,\n '" + "x" * 80 + "')"


def test_dicts_break_between_items_and_subclasses_keep_their_repr():
    long = {"key%d" % n: "value" * 3 for n in range(6)}
    assert pretty(long).split("\n")[1] == " 'key1': 'valuevaluevalue',"

    class Mine(list):
        def __repr__(self):
            return "Mine!"

    assert pretty(Mine(range(100))) == "Mine!"
