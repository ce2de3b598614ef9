"""Exercise 7: build_trie."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_dtype, expect_equal

from .conftest import CODES, N_ITEMS, SIZES, VOCAB, reference_table

pytestmark = pytest.mark.exercise("build_trie")


def _trie(nb, reference):
    trie = nb.build_trie(reference_table(reference), VOCAB)
    expect(all(hasattr(trie, a) for a in ("children", "item", "table")), "build_trie returns a Trie(children, item, "
           "table)", got=type(trie).__name__)
    return trie


def _walk(trie, tokens):
    node = torch.zeros(tokens.shape[0], dtype=torch.long)
    for level in range(tokens.shape[1]):
        nxt = trie.children[node.clamp_min(0), tokens[:, level]]
        node = torch.where(node >= 0, nxt, node)
    return node


def test_types_and_shapes(nb, reference):
    trie = _trie(nb, reference)
    expect_dtype(trie.children, torch.int64, "children")
    expect_dtype(trie.item, torch.int64, "item")
    expect(trie.children.ndim == 2 and trie.children.shape[1] == VOCAB, "children is (n_nodes, vocab_size)",
           got=tuple(trie.children.shape))
    expect(trie.item.shape == (trie.children.shape[0],), "item has one entry per node", got=tuple(trie.item.shape))


def test_every_item_walks_to_its_leaf(nb, reference):
    trie = _trie(nb, reference)
    leaves = _walk(trie, reference_table(reference)[1:])
    expect(bool((leaves > 0).all()), "every item's tokens form a path from the root (node 0)",
           got=f"items {(torch.nonzero(leaves <= 0).flatten() + 1).tolist()} fall off the trie",
           hint="children[node, token] = the child's id, for every (node, token) pair on some item's path")
    expect_equal(trie.item[leaves], torch.arange(1, N_ITEMS + 1), "the item stored at each item's leaf",
                 hint="item[leaf] = the item id (1..n_items: row i of the table is item i)")


def test_one_node_per_distinct_prefix(nb, reference):
    trie = _trie(nb, reference)
    prefixes = {tuple(row[:level]) for row in CODES[1:].tolist() for level in range(1, 4)}
    expect(trie.children.shape[0] == 1 + len(prefixes), f"n_nodes = 1 (root) + {len(prefixes)} distinct prefixes",
           got=trie.children.shape[0], hint="items sharing a prefix share its node: make the (node, token) pairs "
           "unique per level (torch.unique(pairs, dim=0, return_inverse=True)), one new node per unique pair")


def test_invalid_prefixes_are_minus_one(nb, reference):
    trie = _trie(nb, reference)
    table = reference_table(reference)
    bad = torch.tensor([[5, 8]])  # level-0 code 3 (token 5), then level-1 code 2 (token 6 + 2): no item has it
    expect(int(_walk(trie, bad)[0]) == -1, "the prefix (level-0 code 3, level-1 code 2) is no item's: -1",
           hint="initialise children with -1 (torch.full(..., -1)): 0 is the root, a real node")
    expect(bool((trie.children[:, 0] == -1).all()) and bool((trie.children[:, 1] == -1).all()),
           "no node has a child through PAD or BOS", hint="build from rows 1..: row 0 (padding) is not an item")
    root = trie.children[0]
    expect(set(torch.nonzero(root >= 0).flatten().tolist()) == set(table[1:, 0].tolist()),
           "the root's children are exactly the level-0 tokens in use", got=torch.nonzero(root >= 0).flatten().tolist())
    expect(bool((trie.children[trie.children >= 0] > 0).all()), "no edge leads back to the root")


def test_inner_nodes_hold_no_item(nb, reference):
    trie = _trie(nb, reference)
    leaves = _walk(trie, reference_table(reference)[1:])
    inner = torch.ones(trie.children.shape[0], dtype=torch.bool)
    inner[leaves.clamp_min(0)] = False
    expect(bool((trie.item[inner] == 0).all()), "item is 0 at the root and at every inner node")
    expect(bool((trie.children[leaves.clamp_min(0)] == -1).all()), "leaves have no children")


def test_collisions_raise(nb, reference):
    codes = CODES.clone()
    codes[3] = codes[2]  # items 2 and 3 with the same ID
    table = reference.item_token_table(codes, SIZES)
    try:
        nb.build_trie(table, VOCAB)
    except NotImplementedError:
        raise
    except ValueError:
        return
    expect(False, "two items with the same token tuple raise ValueError",
           hint="one leaf could only stand for one of them: the other would never be generated")


def test_does_not_modify_the_table(nb, reference):
    call_leaving_inputs_unchanged(nb.build_trie, reference_table(reference), VOCAB, what="build_trie")


def test_larger_random_catalog(nb, reference):
    g = torch.Generator().manual_seed(0)
    sizes = (6, 5, 4)
    codes = torch.stack([torch.randint(0, s, (200,), generator=g) for s in sizes[:2]], dim=1)
    seen, disamb = {}, []
    for row in map(tuple, codes.tolist()):
        disamb.append(seen.get(row, 0))
        seen[row] = disamb[-1] + 1
    codes = torch.cat([codes, torch.tensor(disamb)[:, None]], dim=1)
    sizes = (6, 5, int(codes[:, 2].max()) + 1)
    codes = torch.cat([torch.zeros(1, 3, dtype=torch.long), codes])
    table = reference.item_token_table(codes, sizes)
    vocab = 2 + sum(sizes)
    trie = nb.build_trie(table, vocab)
    leaves = _walk(trie, table[1:])
    expect_equal(trie.item[leaves.clamp_min(0)], torch.arange(1, 201), "items of 200 random IDs found at their leaves")
    expect(trie.children.shape[0] == reference.build_trie(table, vocab).children.shape[0],
           "as many nodes as distinct prefixes (200 random IDs)", got=trie.children.shape[0])
