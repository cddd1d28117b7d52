package org.sdturbo.serve;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The readiness rule over the workers' state folder, the same rule as scripts/sdturbo_ops/readiness.py
 * (tests/sdturbo_ops/test_readiness.py holds the two together through {@link #main}).
 *
 * <p>Each worker of our handler writes {@code <pid>.json} with {@code "state": "ready"} after load and
 * warm-up, or {@code "failed"}; the serve entrypoint writes {@code draining} on SIGTERM. Not ready while
 * draining; only files of live processes count (a worker that died leaves its file behind); ready when
 * a live worker says ready, failed when none does and a live one says failed, loading otherwise.
 */
public final class StateFolder {

    static final String DRAINING = "draining: the server is shutting down";
    static final String FAILED = "the model failed to load (see the model log)";
    static final String LOADING = "no worker has finished loading and warming up";
    private static final Pattern STATE = Pattern.compile("\"state\"\\s*:\\s*\"(\\w+)\"");
    private static final Pattern STATE_FILE = Pattern.compile("(\\d+)\\.json");

    private StateFolder() {}

    /** Why the folder says "not ready", or null when it says ready. */
    static String problem(Path stateDir) {
        if (Files.exists(stateDir.resolve("draining"))) {
            return DRAINING;
        }
        boolean failed = false;
        try (DirectoryStream<Path> files = Files.newDirectoryStream(stateDir, "*.json")) {
            for (Path file : files) {
                Matcher name = STATE_FILE.matcher(file.getFileName().toString());
                if (!name.matches() || !alive(Long.parseLong(name.group(1)))) {
                    continue;
                }
                String state = state(file);
                if ("ready".equals(state)) {
                    return null;
                }
                failed |= "failed".equals(state);
            }
        } catch (IOException | NumberFormatException e) {
            // an unreadable or vanished folder says nothing is ready
        }
        return failed ? FAILED : LOADING;
    }

    private static boolean alive(long pid) {
        return ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
    }

    private static String state(Path file) {
        try {
            Matcher matcher = STATE.matcher(new String(Files.readAllBytes(file), StandardCharsets.UTF_8));
            return matcher.find() ? matcher.group(1) : "";
        } catch (IOException e) {
            return "";
        }
    }

    /** Prints the rule's answer for each folder given, one line each: "ready" or "not ready: REASON". */
    public static void main(String[] args) {
        for (String dir : args) {
            String problem = problem(Paths.get(dir));
            System.out.println(problem == null ? "ready" : "not ready: " + problem);
        }
    }
}
