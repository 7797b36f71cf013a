"""firmware/package.json (the mip package of the core) is self-contained."""

import json
import re
from pathlib import Path

FW = Path(__file__).resolve().parents[2] / "firmware"
# an import at module level (not indented): needed as soon as the module loads
_TOP_IMPORT = re.compile(r"^(?:import|from)\s+(ct_\w+)", re.M)


def test_package_lists_every_module_its_modules_import() -> None:
    pkg = json.loads((FW / "package.json").read_text())
    have = {name.removesuffix(".py") for name, _ in pkg["urls"]}
    for name, src in pkg["urls"]:
        assert (FW / src).is_file(), src
        text = (FW / src).read_text()
        for mod in _TOP_IMPORT.findall(text):
            assert mod in have, f"{name} imports {mod}, which package.json does not list"
