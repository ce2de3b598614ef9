from . import Mutant

MUTANTS = [
    # NextItemDataset
    Mutant("NextItemDataset", "target leaks into the history (slice includes t)",
           "history = torch.from_numpy(self.flat[start:base + t].copy())",
           "history = torch.from_numpy(self.flat[start:base + t + 1].copy())"),
    Mutant("NextItemDataset", "history one item short (off-by-one in the window)",
           "start = base + max(0, t - self.max_len)", "start = base + max(1, t - self.max_len + 1)"),
    Mutant("NextItemDataset", "truncation keeps the oldest items",
           "start = base + max(0, t - self.max_len)\n        history = torch.from_numpy(self.flat[start:base + t].copy())",
           "history = torch.from_numpy(self.flat[base:base + t][: self.max_len].copy())"),
    Mutant("NextItemDataset", "a lambda in self: cannot be pickled for spawned workers",
           "        self.offsets = np.concatenate(", "        self.to_array = lambda s: np.asarray(s)\n        self.offsets = np.concatenate("),
    Mutant("NextItemDataset", "stateful __getitem__: a cursor instead of the index",
           "        user, t = int(self.users[index]), int(self.positions[index])\n",
           "        self.cursor = getattr(self, 'cursor', -1) + 1\n        index = self.cursor % len(self.users)\n"
           "        user, t = int(self.users[index]), int(self.positions[index])\n"),
    Mutant("NextItemDataset", "min_history ignored",
           "        n_examples = np.maximum(lengths - min_history, 0)\n",
           "        n_examples = np.maximum(lengths - 1, 0)\n        min_history = 1\n"),
    # collate_sequences
    Mutant("collate_sequences", "pads with -1",
           "out = {key: torch.zeros(len(batch), width, dtype=torch.long) for key in keys}",
           "out = {key: torch.full((len(batch), width), -1, dtype=torch.long) for key in keys}"),
    Mutant("collate_sequences", "mask polarity inverted",
           '    out["mask"] = mask\n', '    out["mask"] = ~mask\n'),
    Mutant("collate_sequences", "left padding reverses the history",
           "            out[key][b, cols] = torch.as_tensor(ex[key], dtype=torch.long)",
           "            out[key][b, cols] = torch.as_tensor(ex[key], dtype=torch.long).flip(0) if padding_side == 'left' "
           "else torch.as_tensor(ex[key], dtype=torch.long)"),
    Mutant("collate_sequences", "always right-padded",
           'cols = slice(width - n, width) if padding_side == "left" else slice(0, n)', "cols = slice(0, n)"),
    Mutant("collate_sequences", "mask as float",
           "mask = torch.zeros(len(batch), width, dtype=torch.bool)", "mask = torch.zeros(len(batch), width)"),
    # popularity_distribution
    Mutant("popularity_distribution", "padding keeps its probability", "    probs[0] = 0.0\n", ""),
    Mutant("popularity_distribution", "multiplies by alpha instead of raising to it",
           "probs = counts.to(torch.float64).pow(alpha)", "probs = counts.to(torch.float64) * alpha + (alpha == 0)"),
    Mutant("popularity_distribution", "not normalised", "    return probs / probs.sum()\n", "    return probs\n"),
    # sample_negatives
    Mutant("sample_negatives", "positives not rejected",
           "        if not clash.any():\n            return samples\n", "        return samples\n"),
    Mutant("sample_negatives", "global RNG instead of the generator",
           "samples = torch.multinomial(probs, batch * num_negatives, replacement=True, generator=generator)",
           "samples = torch.multinomial(probs, batch * num_negatives, replacement=True)"),
    Mutant("sample_negatives", "uniform randint with an exclusive upper bound",
           "samples = torch.multinomial(probs, batch * num_negatives, replacement=True, generator=generator)",
           "samples = torch.randint(1, len(probs) - 1, (batch * num_negatives,), generator=generator)"),
    Mutant("sample_negatives", "no check for rows with no mass left",
           "    if (left <= 1e-12).any():\n", "    if False:\n"),
]

# Held-out classes of mistakes (views into the dataset, dtypes, inputs mutated in place).
MUTANTS += [
    Mutant("NextItemDataset", "history is a view into the dataset's own array",
           "        history = torch.from_numpy(self.flat[start:base + t].copy())\n",
           "        history = torch.from_numpy(self.flat[start:base + t])\n"),
    Mutant("collate_sequences", "int32 histories passed through as int32",
           "    out = {key: torch.zeros(len(batch), width, dtype=torch.long) for key in keys}\n",
           "    out = {key: torch.zeros(len(batch), width, dtype=torch.as_tensor(batch[0][key]).dtype if batch else torch.long) for key in keys}\n"),
    Mutant("popularity_distribution", "float32 probabilities where float64 is specified",
           "    probs = counts.to(torch.float64).pow(alpha)\n", "    probs = counts.to(torch.float32).pow(alpha)\n"),
    Mutant("popularity_distribution", "padding zeroed in the caller's float64 counts",
           "    probs = counts.to(torch.float64).pow(alpha)\n    probs[0] = 0.0\n",
           "    probs = counts.to(torch.float64)\n    probs[0] = 0.0\n    probs = probs.pow(alpha)\n"),
]
