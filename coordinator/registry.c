/* registry.c - placeholder replaced by the in-memory agent registry. */
int tm_registry_placeholder(void);
int tm_registry_placeholder(void)
{
    return 0;
}
