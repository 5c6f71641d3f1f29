// Placeholder translation unit until the registry client lands.
