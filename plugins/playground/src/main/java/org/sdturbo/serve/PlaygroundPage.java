package org.sdturbo.serve;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import org.pytorch.serve.servingsdk.Context;
import org.pytorch.serve.servingsdk.ModelServerEndpoint;
import org.pytorch.serve.servingsdk.annotations.Endpoint;
import org.pytorch.serve.servingsdk.annotations.helpers.EndpointTypes;
import org.pytorch.serve.servingsdk.http.Request;
import org.pytorch.serve.servingsdk.http.Response;

/**
 * {@code GET /playground}: one static page (playground.html beside this class in the jar) from which a
 * person asks the model for images, on the inference listener of the local server.
 *
 * <p>Served by TorchServe itself, the page has the same origin as {@code /predictions/sdturbo}, so its
 * requests need no CORS at all (TorchServe's CORS stays off, as shipped) and no second server or port is
 * started. The Content-Security-Policy lets the page load nothing from anywhere and talk to its own origin
 * only. Only {@code make plugin} builds this jar for the local server; the container image does not carry
 * it (its Dockerfile builds the readiness plugin alone).
 */
@Endpoint(
        urlPattern = "playground",
        endpointType = EndpointTypes.INFERENCE,
        description = "A page to try the model in a browser")
public class PlaygroundPage extends ModelServerEndpoint {

    static final String POLICY =
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                    + "img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                    + "frame-ancestors 'none'";

    private static volatile byte[] page;

    @Override
    public void doGet(Request req, Response rsp, Context ctx) throws IOException {
        byte[] body = page();
        rsp.setStatus(200, "OK");
        rsp.setContentType("text/html; charset=utf-8");
        rsp.setHeader("Content-Security-Policy", POLICY);
        rsp.setHeader("X-Content-Type-Options", "nosniff");
        rsp.setHeader("Cache-Control", "no-store");
        OutputStream out = rsp.getOutputStream();
        out.write(body);
        out.flush();
    }

    private static byte[] page() throws IOException {
        byte[] loaded = page;
        if (loaded == null) {
            try (InputStream in = PlaygroundPage.class.getResourceAsStream("playground.html")) {
                if (in == null) {
                    throw new IOException("playground.html is missing from the plugin jar");
                }
                loaded = in.readAllBytes();
            }
            page = loaded;
        }
        return loaded;
    }
}
