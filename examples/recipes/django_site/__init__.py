"""A minimal Django site that enqueues sokka tasks: see docs/recipes.md."""
