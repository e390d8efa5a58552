"""Job specs: typed loading, paths relative to the spec, and errors naming file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config.jobspec import load_job_spec, parse_duration
from pipeline.errors import ConfigError


def spec_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "jobs" / "job.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('name = "fall"\nmanifest = "m.csv"\n' + body)
    return path


class TestLoading:
    def test_defaults_and_relative_paths(self, tmp_path: Path) -> None:
        """Paths resolve against the spec's folder; output defaults to output/<name> beside jobs/."""
        spec = load_job_spec(spec_file(tmp_path, 'reference_sets = "refs/sets.csv"\n'))
        assert spec.manifest == tmp_path / "jobs" / "m.csv"
        assert spec.reference_sets == tmp_path / "jobs" / "refs" / "sets.csv"
        assert spec.out_dir == tmp_path / "output" / "fall"
        assert (spec.defaults.model, spec.defaults.width, spec.defaults.options) == (
            "openai:gpt-image@2",
            None,
            {},
        )
        assert (spec.limits.concurrency, spec.resume.keep_earlier_models) == (16, False)

    def test_every_section_is_read(self, tmp_path: Path) -> None:
        body = (
            'output_dir = "out"\n[provider]\nprofile = "runware"\napi_key_env = "MY_KEY"\n'
            '[defaults]\nmodel = "openai:1@1"\nwidth = 1536\nquality = "high"\nnumber_results = 2\n'
            '[columns]\nid = "sku"\nprompt = "text"\n'
            '[limits]\nconcurrency = 4\nbudget_usd = 12.5\nmax_runtime = "1h30m"\n'
            '[output]\ndownload = false\nformats = ["parquet", "csv"]\n'
        )
        spec = load_job_spec(spec_file(tmp_path, body))
        assert spec.out_dir == tmp_path / "jobs" / "out"
        assert (spec.provider.profile, spec.provider.api_key_env) == ("runware", "MY_KEY")
        assert (spec.defaults.model, spec.defaults.width, spec.defaults.number_results) == (
            "openai:1@1",
            1536,
            2,
        )
        assert spec.defaults.options == {"quality": "high"}
        assert spec.columns == {"id": "sku", "prompt": "text"}
        assert (spec.limits.budget_usd, spec.limits.max_runtime) == (12.5, 5400)
        assert (spec.output.download, spec.output.formats) == (False, ("parquet", "csv"))

    def test_a_spec_without_a_model_gets_a_live_one(self, tmp_path: Path) -> None:
        """Leaving `model` out means GPT Image 2, not a model that has shut down."""
        assert load_job_spec(spec_file(tmp_path, "")).defaults.model == "openai:gpt-image@2"

    def test_defaults_take_any_declared_option(self, tmp_path: Path) -> None:
        """seed, quality, rendering_speed...: each is a [defaults] key, kept as the text a cell would hold."""
        body = '[defaults]\nseed = 7\nquality = "high"\nrendering_speed = "TURBO"\nprompt_upsampling = true\n'
        defaults = load_job_spec(spec_file(tmp_path, body)).defaults
        assert defaults.options == {
            "seed": "7",
            "quality": "high",
            "rendering_speed": "TURBO",
            "prompt_upsampling": "true",
        }

    def test_resume_section_loads(self, tmp_path: Path) -> None:
        """[resume] keep_earlier_models = true is read."""
        spec = load_job_spec(spec_file(tmp_path, "[resume]\nkeep_earlier_models = true\n"))
        assert spec.resume.keep_earlier_models is True

    @pytest.mark.parametrize(
        ("text", "seconds"), [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("300ms", 0.3)]
    )
    def test_durations(self, text: str, seconds: float) -> None:
        assert parse_duration(text) == pytest.approx(seconds)


BAD_SPECS = [
    ("unknown top-level key", "colour = 1\n", "colour: unknown key"),
    ("unknown limits key", "[limits]\nspeed = 3\n", "limits.speed: unknown key"),
    ("wrong type", '[limits]\nconcurrency = "many"\n', "limits.concurrency"),
    ("bad duration", '[limits]\nmax_runtime = "soon"\n', "limits.max_runtime"),
    ("unknown model", '[defaults]\nmodel = "openai:9@9"\n', "defaults.model: unknown model 'openai:9@9'"),
    (
        "bad quality",
        '[defaults]\nquality = "ultra"\n',
        "defaults.quality: 'ultra' is not allowed for openai:gpt-image@2 (allowed: low, medium, high, auto)",
    ),
    (
        "bad quality for the named model",
        '[defaults]\nmodel = "openai:1@2"\nquality = "xhigh"\n',
        "defaults.quality: 'xhigh' is not allowed for openai:1@2 (allowed: low, medium, high, auto)",
    ),
    (
        "bad background",
        '[defaults]\nmodel = "openai:1@2"\nbackground = "pink"\n',
        "defaults.background: 'pink' is not allowed for openai:1@2 (allowed: opaque, transparent, auto)",
    ),
    (
        "option no model allows that value",
        '[defaults]\nrendering_speed = "WARP"\n',
        "defaults.rendering_speed: 'WARP' is not allowed for ideogram:4@0 (allowed: TURBO, DEFAULT, QUALITY)",
    ),
    (
        "unknown option",
        "[defaults]\nsed = 7\n",
        "defaults.sed: unknown key (options: acceleration, background, cfg_scale,",
    ),
    (
        "bad size",
        '[defaults]\nmodel = "openai:1@2"\nheight = 999\n',
        "defaults.width: size 1024x999 is not allowed for openai:1@2 "
        "(allowed: 1024x1024, 1536x1024, 1024x1536)",
    ),
    (
        "size off the model's rule",
        "[defaults]\nwidth = 1000\nheight = 1000\n",
        "defaults.width: size 1000x1000 is not allowed for openai:gpt-image@2 "
        "(sides must be multiples of 16)",
    ),
    (
        "resolution and size",
        '[defaults]\nmodel = "google:4@3"\nresolution = "1K"\nwidth = 1024\nheight = 1024\n',
        "defaults.resolution: give resolution or width/height, not both",
    ),
    ("too many results", "[defaults]\nnumber_results = 11\n", "defaults.number_results: at most 10"),
    ("bad resume key", "[resume]\nkeep_old = true\n", "resume.keep_old: unknown key"),
    ("unknown column field", '[columns]\nsku = "x"\n', "columns: unknown field 'sku'"),
    (
        "column used twice",
        '[columns]\nid = "x"\nprompt = "x"\n',
        "column 'x' is mapped to more than one field",
    ),
    ("bad filename field", '[output]\nfilename = "{sku}.{ext}"\n', "output.filename"),
]


@pytest.mark.parametrize(("case", "body", "message"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_names_file_key_and_reason(tmp_path: Path, case: str, body: str, message: str) -> None:
    """ConfigError (exit 2) with the file, the key and the reason; no pydantic noise."""
    path = spec_file(tmp_path, body)
    with pytest.raises(ConfigError) as raised:
        load_job_spec(path)
    assert raised.value.exit_code == 2
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)
    assert "Value error" not in str(raised.value)


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_job_spec(path)
