package org.sdturbo.serve;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import org.pytorch.serve.servingsdk.Context;
import org.pytorch.serve.servingsdk.ModelServerEndpoint;
import org.pytorch.serve.servingsdk.annotations.Endpoint;
import org.pytorch.serve.servingsdk.annotations.helpers.EndpointTypes;
import org.pytorch.serve.servingsdk.http.Request;
import org.pytorch.serve.servingsdk.http.Response;
import org.pytorch.serve.wlm.Model;
import org.pytorch.serve.wlm.ModelManager;
import org.pytorch.serve.wlm.WorkerState;
import org.pytorch.serve.wlm.WorkerThread;

/**
 * A truthful {@code GET /ping} for TorchServe 0.12, installed as an endpoint plugin (no fork).
 *
 * <p>TorchServe's own ping answers 200 "Healthy" while a worker is still loading and while a model
 * fails to load. SageMaker routes traffic on the first 200, so this replaces it: 200 only when every
 * model loaded at start-up has a worker that TorchServe reports as loaded AND whose handler wrote
 * {@code "ready"} to {@code $SDSERVE_STATE_DIR/<worker pid>.json} after its warm-up (the handler
 * writes {@code "failed"} with the reason when the weights cannot load). A {@code draining} file in
 * the same folder, written by the serve entrypoint on SIGTERM, turns the answer to 503 as well.
 */
@Endpoint(
        urlPattern = "ping",
        endpointType = EndpointTypes.INFERENCE,
        description = "Readiness: 200 only when every model has a loaded, warmed-up worker")
public class ReadinessPing extends ModelServerEndpoint {

    static final String STATE_DIR_ENV = "SDSERVE_STATE_DIR";

    @Override
    public void doGet(Request req, Response rsp, Context ctx) throws IOException {
        String problem = findProblem();
        String body;
        if (problem == null) {
            rsp.setStatus(200, "OK");
            body = "{\"status\": \"Healthy\"}";
        } else {
            rsp.setStatus(503, "Service Unavailable");
            body = "{\"status\": \"Unhealthy\", \"reason\": \"" + jsonEscape(problem) + "\"}";
        }
        rsp.setContentType("application/json");
        OutputStream out = rsp.getOutputStream();
        out.write(body.getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    /** Returns why the server is not ready, or null when it is. */
    static String findProblem() {
        String dir = System.getenv(STATE_DIR_ENV);
        Path stateDir = dir == null || dir.isEmpty() ? null : Paths.get(dir);
        if (stateDir != null && Files.exists(stateDir.resolve("draining"))) {
            return "draining: the server is shutting down";
        }
        ModelManager manager = ModelManager.getInstance();
        if (manager.getStartupModels().isEmpty()) {
            return "no model is registered";
        }
        for (String name : manager.getStartupModels()) {
            String problem = modelProblem(manager, name, stateDir);
            if (problem != null) {
                return problem;
            }
        }
        return null;
    }

    private static String modelProblem(ModelManager manager, String name, Path stateDir) {
        Model model;
        try {
            model = manager.getModel(name, null);
        } catch (Exception e) {
            model = null;
        }
        if (model == null) {
            return name + ": not registered";
        }
        List<WorkerThread> workers = manager.getWorkers(model.getModelVersionName());
        String failure = null;
        for (WorkerThread worker : workers) {
            if (worker.getState() != WorkerState.WORKER_MODEL_LOADED) {
                continue;
            }
            if (stateDir == null) {
                return null; // no state folder configured: TorchServe's "loaded" is all we know
            }
            String state = readState(stateDir.resolve(worker.getPid() + ".json"));
            if (state.contains("\"ready\"")) {
                return null;
            }
            if (state.contains("\"failed\"")) {
                failure = name + ": the model failed to load (see the model log)";
            }
        }
        return failure != null ? failure : name + ": no worker has finished loading and warming up";
    }

    private static String readState(Path file) {
        try {
            return new String(Files.readAllBytes(file), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }

    private static String jsonEscape(String text) {
        return text.replace("\\", "\\\\").replace("\"", "\\\"");
    }
}
