"""SignFlow migration harness: scenarios, stacks, load, collectors, analysis, results, report."""
