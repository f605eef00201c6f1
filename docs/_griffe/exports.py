"""Griffe extensions for the docs build (mkdocs.yml loads them; the package does not).

``ExportsOverSubmodules``: a name a package exports in ``__all__`` is the object it imports under
that name, even when a submodule has the same name. ``functional_metarl.envs`` does
``from .rollout import rollout``: at runtime ``envs.rollout`` is the function, but griffe keeps the
submodule ``envs/rollout.py`` as the member, so mkdocstrings (with ``show_submodules: false``)
would render nothing for it. This swaps in an alias to the imported object, as Python resolves it.

``SphinxRolesAsCode``: the docstrings use Sphinx roles (``:func:`adapt```); the Google-style
renderer would print the role's colons literally, so a role becomes plain inline code.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc):`~?([^`]+)`")


class ExportsOverSubmodules(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        # Collect first, then swap: the targets are looked up in the tree as loaded.
        swaps = []
        self._collect(pkg, pkg, swaps)
        for module, name, target in swaps:
            module.set_member(name, griffe.Alias(name, target, parent=module))

    def _collect(self, root: griffe.Module, module: griffe.Module, swaps: list) -> None:
        for member in list(module.members.values()):
            if not member.is_alias and member.is_module:
                self._collect(root, member, swaps)
        for name in module.exports or ():
            member = module.members.get(name)
            path = module.imports.get(name)
            if member is None or member.is_alias or not member.is_module or not path or path == member.path:
                continue
            target = root
            for part in path.split(".")[1:]:
                target = target.members[part]
            swaps.append((module, name, target.final_target if target.is_alias else target))


class SphinxRolesAsCode(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
