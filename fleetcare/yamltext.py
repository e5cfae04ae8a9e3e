"""YAML definition files (kinds, profiles) read safely: PyYAML's safe loader, a key given twice
in one mapping refused instead of the last one kept, and a document whose aliases would expand
it past :data:`MAX_VALUES` values refused before anything walks it (a "billion laughs" file of
a few hundred bytes otherwise expands to hundreds of millions of strings in every check that
visits the document)."""

from __future__ import annotations

from typing import Any

import yaml

MAX_VALUES = 100_000  # scalars, lists and mappings of the expanded document; ~30x the engine kind


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def _expanded_size_exceeds(root: yaml.Node, limit: int) -> bool:
    """Whether ``root`` counts more than ``limit`` nodes with every alias expanded (an alias is
    the node it names, visited again); stops counting at the limit."""
    count = 0
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return False


def load_yaml(text: str) -> Any:
    """The one document in ``text``; ``yaml.YAMLError`` (with ``problem`` and
    ``problem_mark`` where known) for bad YAML, a key given twice or a document too big."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size_exceeds(node, MAX_VALUES):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the document expands to more than {MAX_VALUES:,} values (through its aliases)",
                node.start_mark,
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()
