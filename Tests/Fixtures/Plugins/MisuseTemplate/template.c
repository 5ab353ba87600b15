/* Header-only: the template of the misusing fixture plugins (include/misuse_plugin.h). */
