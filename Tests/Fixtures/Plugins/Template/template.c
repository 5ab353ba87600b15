/* Header-only: the template of the broken fixture plugins. */
