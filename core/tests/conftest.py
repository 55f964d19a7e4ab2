from recarena.testing import isolated_home_fixture

isolated_home = isolated_home_fixture()
