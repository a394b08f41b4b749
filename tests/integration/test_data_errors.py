"""The bad-input catalogue, data part, on the command line (the in-process half:
tests/unit/tasks/classification/test_data_errors.py)."""

from tests.helpers import cli


def test_a_bad_eval_file_on_the_command_line(tmp_path):
    (tmp_path / "train.csv").write_text("sentence,label\ngood,1\nbad,0\n")
    (tmp_path / "dev.csv").write_text("content,label\nnice,1\nawful,0\n")
    proc = cli(
        [
            "distillkit",
            "data=local",
            "data.train_file=train.csv",
            "data.eval_file=dev.csv",
            "data.text_field=sentence",
            "logger=none",
            "hardware=cpu",
            f"cache_dir={tmp_path / 'cache'}",
            "hydra.run.dir=run",
        ],
        tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: data.eval_file='dev.csv': has no column 'sentence'")
    assert "Fix: set data.eval_text_field=content." in errors[0]
