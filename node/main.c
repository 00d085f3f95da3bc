/* dmnode entry point: see node_cli.c. */
int node_cli_main(int argc, char **argv);

int main(int argc, char **argv)
{
    return node_cli_main(argc, argv);
}
