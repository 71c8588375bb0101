"""Demonstrations of refusals: one line of type and message, and a loud failure without one."""

import pytest

from companion.demonstrate import show_refusal


class CustomRefusal(RuntimeError):
    pass


def test_the_refusal_is_printed_as_type_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse() -> None:
        raise CustomRefusal("the data changed between two passes")

    show_refusal(refuse)
    assert capsys.readouterr().out == "CustomRefusal: the data changed between two passes\n"


def test_builtin_errors_keep_their_name(capsys: pytest.CaptureFixture[str]) -> None:
    show_refusal(lambda: int("seven"))
    assert capsys.readouterr().out.startswith("ValueError: invalid literal for int()")


def test_an_action_that_does_not_refuse_fails_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(AssertionError, match="expected a refusal, but the action returned 7"):
        show_refusal(lambda: 7)
    assert capsys.readouterr().out == ""


def test_a_long_message_is_wrapped_to_the_width(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse() -> None:
        raise ValueError("word " * 40)

    show_refusal(refuse, width=50)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ValueError: word")
    assert len(lines) > 1 and all(len(line) <= 50 for line in lines)
    assert " ".join(lines).split() == ["ValueError:", *["word"] * 40]
