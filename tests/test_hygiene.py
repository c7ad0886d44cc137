"""The check every executed notebook cell passes (fmlbd.hygiene): warnings, tracebacks, stray return
values and extra progress bars are caught; clean output is not flagged."""
from __future__ import annotations

from fmlbd.hygiene import notebook_problems, output_problems, visible_lines


def stream(text, name="stderr"):
    return {"output_type": "stream", "name": name, "text": text}


BAR = "case (a): 100%|██████████| 10/10 [00:03<00:00,  3.10it/s]"


def test_clean_outputs_pass():
    outputs = [stream("attack round: 11\n", "stdout"),
               stream("\r" + BAR.replace("100%", " 40%").replace("10/10", "4/10") + "\r" + BAR + "\n"),
               {"output_type": "execute_result", "data": {"text/plain": "   case  value\n0     a   0.91"}},
               {"output_type": "display_data", "data": {"image/png": "iVBOR"}}]
    assert output_problems(outputs) == []


def test_a_warning_is_caught_wherever_it_is_printed():
    warning = "/x/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update jupyter and ipywidgets.\n"
    assert output_problems([stream(warning)]) == [f"a warning: {warning.strip()[:120]}"]
    assert output_problems([stream("ok\n" + "a.py:3: UserWarning: x\n", "stdout")])
    assert output_problems([stream("the Warning sign is not one\n")]) == []


def test_a_traceback_or_an_error_is_caught():
    assert output_problems([stream("Traceback (most recent call last):\n  File ...\nValueError: x\n")]) == \
        ["a traceback"]
    assert output_problems([{"output_type": "error", "ename": "ValueError", "evalue": "x", "traceback": []}]) == \
        ["an error: ValueError: x"]


def test_a_stray_return_value_is_caught():
    for value in ("PosixPath('../outputs/quick/figures/dampening.png')", "<Figure size 640x480 with 1 Axes>",
                  "[<matplotlib.lines.Line2D at 0x7f>]"):
        problems = output_problems([{"output_type": "execute_result", "data": {"text/plain": value}}])
        assert len(problems) == 1 and problems[0].startswith("a stray return value"), value
    figure = {"text/plain": "<Figure size 640x480 with 1 Axes>", "image/png": "iVBOR"}  # shown as a picture
    assert output_problems([{"output_type": "execute_result", "data": figure}]) == []


def test_more_than_one_progress_bar_left_on_screen_is_caught():
    two = stream(BAR + "\n" + BAR.replace("(a)", "(b)") + "\n")
    assert output_problems([two]) == ["2 progress bars (at most one per cell)"]
    split = [stream(BAR + "\n"), stream("\r" + BAR + "\n")]  # two outputs, one bar each
    assert output_problems(split) == ["2 progress bars (at most one per cell)"]
    redrawn = [stream("\r" + BAR.replace("100%", f"{p:3d}%")) for p in (0, 40, 100)] + [stream("\n")]
    assert output_problems(redrawn) == []  # one bar redrawn over several messages, as papermill stores it
    cleared = stream("\r" + BAR + "\r" + " " * len(BAR) + "\r")  # leave=False: nothing stays on screen
    assert output_problems([cleared, stream(BAR + "\n")]) == []
    assert output_problems([stream("rounds: 250it [00:04, 60.1it/s]\n" + BAR + "\n")])


def test_visible_lines_follow_carriage_returns():
    assert visible_lines("a\rbc\nd\r  \n\ne\r\nf\r") == ["bc", "e"]


def test_notebook_problems_number_code_cells_from_zero():
    cells = [{"cell_type": "markdown", "source": "x"},
             {"cell_type": "code", "outputs": []},
             {"cell_type": "code", "outputs": [stream("a.py:1: FutureWarning: y\n")]}]
    assert notebook_problems(cells) == ["cell 1: a warning: a.py:1: FutureWarning: y"]
