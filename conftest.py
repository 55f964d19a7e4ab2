"""Every test of the workspace runs with RECARENA_HOME in its own temporary folder, downloads
nothing and keeps wandb off (RECARENA_TEST_WANDB=offline turns it on): no test can write into
the user's ~/.recarena. `.ci/run` checks that it stayed unchanged."""

from recarena.testing import isolated_home_fixture

isolated_home = isolated_home_fixture()

# the RecBole adapter's tests run in .venv-recbole (`just test` runs them there); the workspace's
# .venv has no RecBole, on purpose (it needs pandas 2)
import importlib.util  # noqa: E402

collect_ignore = [] if importlib.util.find_spec("recarena_recbole") else ["plugins/recbole-adapter"]
