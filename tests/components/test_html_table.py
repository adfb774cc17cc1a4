"""The step reports' HTML tables (components/html_table.py)."""

from components.html_table import escape, table


def test_escape_makes_any_value_safe_text():
    assert escape("<b>&\"'") == "&lt;b&gt;&amp;&quot;&#x27;"
    assert escape(0.5) == "0.5"


def test_the_header_is_escaped_the_cells_are_kept_and_text_columns_are_marked():
    html = table(["task", "a<b"], [["click", "<i>0.9</i>"], ["atc", "0.8"]], text_columns=(0,))
    assert html == (
        '<table><tr><th class="text">task</th><th>a&lt;b</th></tr>'
        '<tr><td class="text">click</td><td><i>0.9</i></td></tr>'
        '<tr><td class="text">atc</td><td>0.8</td></tr></table>'
    )
    assert table(["x"], [], text_columns=()) == "<table><tr><th>x</th></tr></table>"
