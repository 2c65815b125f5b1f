"""ops/commands.py: commands are bounded, and a missing one is a failed result."""

from ops.commands import last_line, run_command


def test_commands_time_out_instead_of_hanging():
    done = run_command(["sleep", "5"], 0.2)
    assert done.returncode == 124 and "no answer within 0.2s" in done.stderr


def test_a_missing_command_is_a_failed_result():
    done = run_command(["/nonexistent/convex-selfhost-tool"], 5)
    assert done.returncode == 127 and "No such file" in done.stderr


def test_the_last_line_of_output_is_kept_short():
    assert last_line("first\n\nerror: it failed\n\n") == "error: it failed"
    assert last_line("") == "no message" and len(last_line("x" * 1000)) == 300
