"""The results format: its schema, reader and filters (`store`), the writer of a run (`write`),
per-sample records, the files a run owns (`layout`), what a folder already holds (`kept`), and
the readers' side: summary columns, cells with intervals and paired differences (`aggregate`),
configuration labels and the console tables (`summary`)."""
