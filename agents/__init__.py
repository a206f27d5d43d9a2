"""The methods' agents: the LLM-backed steps of the graphs (CultureLLM's paraphrase generator, synonym
substitutor, semantic judges and selector; CulturePark's dialogue agents, opinion extractor, verifier and
rewriter). The models they call are built by `agents.providers`."""
