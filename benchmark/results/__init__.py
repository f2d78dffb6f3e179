"""The results format and its readers: the schema, reader and filters (`store`), per-sample
records, the files a run owns (`layout`), what a folder already holds (`kept`); summary columns,
cells with intervals and paired differences (`aggregate`), configuration labels, the relation
between agreement and robustness, and the console tables (`summary`)."""
