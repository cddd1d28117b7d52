package org.sdturbo.serve;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import org.pytorch.serve.servingsdk.Context;
import org.pytorch.serve.servingsdk.ModelServerEndpoint;
import org.pytorch.serve.servingsdk.annotations.Endpoint;
import org.pytorch.serve.servingsdk.annotations.helpers.EndpointTypes;
import org.pytorch.serve.servingsdk.http.Request;
import org.pytorch.serve.servingsdk.http.Response;
import org.pytorch.serve.wlm.ModelManager;
import org.pytorch.serve.wlm.WorkerState;
import org.pytorch.serve.wlm.WorkerThread;

/**
 * A truthful {@code GET /ping} for TorchServe 0.12, installed as an endpoint plugin (no fork).
 *
 * <p>TorchServe's own ping answers 200 "Healthy" while a worker is still loading and while a model
 * fails to load. SageMaker routes traffic on the first 200, so this replaces it: 200 only when every
 * model loaded at start-up is registered and the workers' state folder ({@code $SDSERVE_STATE_DIR})
 * says ready by {@link StateFolder}'s rule (a live worker wrote {@code "ready"} after its warm-up); 503
 * with the reason otherwise, including a {@code draining} server. Without a state folder, TorchServe's
 * own "loaded" is all it knows.
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
        boolean hasFolder = dir != null && !dir.isEmpty();
        if (hasFolder && Files.exists(Paths.get(dir, "draining"))) {
            return StateFolder.DRAINING;
        }
        ModelManager manager = ModelManager.getInstance();
        if (manager.getStartupModels().isEmpty()) {
            return "no model is registered";
        }
        for (String name : manager.getStartupModels()) {
            String problem = registrationProblem(manager, name, hasFolder);
            if (problem != null) {
                return problem;
            }
        }
        return hasFolder ? StateFolder.problem(Paths.get(dir)) : null;
    }

    private static String registrationProblem(ModelManager manager, String name, boolean hasFolder) {
        org.pytorch.serve.wlm.Model model;
        try {
            model = manager.getModel(name, null);
        } catch (Exception e) {
            model = null;
        }
        if (model == null) {
            return name + ": not registered";
        }
        if (hasFolder) {
            return null;
        }
        for (WorkerThread worker : manager.getWorkers(model.getModelVersionName())) {
            if (worker.getState() == WorkerState.WORKER_MODEL_LOADED) {
                return null;
            }
        }
        return name + ": no worker has loaded";
    }

    private static String jsonEscape(String text) {
        return text.replace("\\", "\\\\").replace("\"", "\\\"");
    }
}
