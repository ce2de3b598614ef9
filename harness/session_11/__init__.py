"""Session 11 — LLM cold-start: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=11,
    slug="cold_start",
    title="LLM cold-start: passages, masked mean pooling, batched cached encoding, text in DLRM, ID dropout",
    exercises=(
        Exercise(
            "format_item_text",
            summary="prefix + 'Title (year). Genres: a, b. description.', missing fields skipped, the description "
                    "cut by whole words to fit the token budget",
            hint="parts = ['Title (1995)', 'Genres: A, B' (or 'Category: C'), description], each without a trailing "
                 "'.', skipped when missing (None, NaN, pd.NA, blank); text = prefix + '. '.join(parts) + '.'. With a "
                 "tokenizer and max_tokens: while len(tokenizer(text)['input_ids']) > max_tokens, keep fewer words "
                 "of the description (binary search over the number of words kept); never cut the title or genres."),
        Exercise(
            "mean_pool",
            summary="masked mean of the last hidden state over real tokens, in float32, zero for an empty row",
            hint="m = attention_mask.unsqueeze(-1).float(); (h.float() * m).sum(1) / m.sum(1).clamp_min(1e-9). "
                 "Dividing by T (or h.mean(1)) counts the padding; the [CLS] vector h[:, 0] is another pooling."),
        Exercise(
            "encode_texts",
            summary="batches -> tokenizer(padding, truncation, max_length) -> model in eval mode under no_grad "
                    "(autocast when amp) -> mean_pool -> L2 norm -> float32 CPU rows in input order, tqdm bar",
            hint="model.eval(); with torch.no_grad(): for each batch: inputs = tokenizer(batch, padding=True, "
                 "truncation=True, max_length=max_tokens, return_tensors='pt').to(device); with torch.autocast("
                 "device.type, dtype=..., enabled=use_amp): h = model(**inputs).last_hidden_state; v = "
                 "F.normalize(mean_pool(h, inputs['attention_mask']), dim=-1) if normalize. amp=None: "
                 "amp_dtype(device) (None on a CPU); amp=True: that or bfloat16. Return torch.cat(...).float().cpu(); "
                 "if you sort by length, put the rows back in order. bar = tqdm(total=len(texts), disable=not progress)."),
        Exercise(
            "cached_encode",
            summary="key = sha256(model name, then NUL + each text); load <key>.pt on a hit, else encode once and "
                    "save atomically (temporary file + os.replace)",
            hint="h = hashlib.sha256(model_name.encode()); for t in texts: h.update(b'\\0'); h.update(t.encode()); "
                 "path = Path(cache_dir) / f'{h.hexdigest()}.pt' (mkdir parents=True). Hit: torch.load(path, "
                 "weights_only=True) (a file that fails to load or has the wrong number of rows is a miss). Miss: "
                 "v = encode(list(texts)).float().cpu(); torch.save to tempfile.mkstemp(dir=cache_dir), then "
                 "os.replace(tmp, path). Never Python's hash(): it is salted per process."),
        Exercise(
            "TextFeature",
            summary="a frozen (n_items + 1, H) buffer of text vectors looked up by the raw item id, projected "
                    "by Linear(H, d, bias=False): a DLRM extra vector",
            hint="self.register_buffer('vectors', vectors.float().clone()); self.proj = nn.Linear(H, dim, "
                 "bias=False). forward: self.proj(self.vectors[batch['item']]). batch['item'] is the raw id; "
                 "batch['item_id'] is the vocabulary code, 0 for every cold item."),
        Exercise(
            "ItemIDDropout",
            summary="training only: per row with probability p, item_id code -> 0 and dense log_item_count -> 0 "
                    "(one draw per row); eval: the batch untouched; never in place",
            hint="if not self.training: return dict(batch). drop = torch.rand(B, device=...) < self.p; out = "
                 "dict(batch); out[id_feature] = batch[id_feature].masked_fill(drop, 0); dense = "
                 "batch['dense'].clone(); dense[:, col] = dense[:, col].masked_fill(drop, 0.0); out['dense'] = "
                 "dense. Keep batch['item'] (the text is looked up with it) and every other feature."),
    ),
)
