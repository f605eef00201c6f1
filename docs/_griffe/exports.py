"""Griffe extension for the docs build: a name a package exports in ``__all__`` is the object it
imports under that name, even when a submodule has the same name.

``functional_metarl.envs`` does ``from .rollout import rollout``: at runtime ``envs.rollout`` is
the function, but griffe keeps the submodule ``envs/rollout.py`` as the member, so mkdocstrings
(with ``show_submodules: false``) would render nothing for it. This swaps in an alias to the
imported object, as Python itself resolves the name.
"""

from __future__ import annotations

import griffe


class ExportsOverSubmodules(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        self._fix(pkg)

    def _fix(self, module: griffe.Module) -> None:
        for member in list(module.members.values()):
            if not member.is_alias and member.is_module:
                self._fix(member)
        for name in module.exports or ():
            member = module.members.get(name)
            target = module.imports.get(name)
            if member is not None and not member.is_alias and member.is_module and target and target != member.path:
                module.set_member(name, griffe.Alias(name, target, parent=module))
