"""Recipes: sokka inside Flask, FastAPI and Django applications (docs/recipes.md)."""
