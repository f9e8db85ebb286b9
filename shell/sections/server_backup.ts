// `server backup FILE`: an online snapshot of the store taken by the running server itself,
// through its own connection (same verification and atomic rename as `lilt backup`).

import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { backupDatabase, BackupError } from "../../core/storage/backup.ts";

/** The `server backup` command (kept apart from the rest of the `server` section). */
export function serverBackupCommands(): CommandSpec[] {
  return [
    {
      section: "server",
      name: "backup",
      summary: "Write a verified snapshot of the store to FILE (its directory must exist)",
      args: [{ name: "file", kind: "file" }],
      run: async ({ server }, [file]) => {
        if (!file) throw new CommandError("Expected the path of the backup file to write");
        if (server.database.dialect === "postgresql") {
          // A snapshot file is the embedded store's; a PostgreSQL database has its own tools.
          throw new CommandError(
            'server backup works on the embedded store (storage.driver = "sqlite"); this ' +
              `server stores its data in PostgreSQL (${server.database.path}): use pg_dump there`,
          );
        }
        try {
          await backupDatabase(server.database, file);
        } catch (error) {
          if (error instanceof BackupError) throw new CommandError(error.message);
          throw error;
        }
        const size = (await Deno.stat(file)).size;
        return { message: `Backed up the store to ${file} (${size} bytes)`, data: { file, size } };
      },
    },
  ];
}
