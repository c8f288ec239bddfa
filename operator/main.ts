/** `peertunnel operator`: not built yet; the controller and webhook land with the operator issue. */
export async function runOperator(_args: string[], _env: NodeJS.ProcessEnv): Promise<number> {
  process.stderr.write('peertunnel: the operator is not part of this build yet\n');
  return 2;
}
