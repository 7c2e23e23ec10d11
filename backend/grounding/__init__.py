"""Grounding: what the sources say and whether an answer rests on them — sentences and their vectors, a
question's relevance to a source sentence, facts (numbers, names, code), the claim check of each answer
sentence, coverage (do the sources answer the question at all) and the per-turn answer checks. Imports no
chat, stream or api module."""
