// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//
// rig-gltri: draws a known picture with the GPU's own GL driver (GBM + EGL +
// GLES2 on a DRM card), checks it with glReadPixels and shows it on the
// card's first connected output with a KMS mode set, so that a screendump
// can check it too.
//
// The picture, in GL's normalised device coordinates: the whole surface
// cleared to CLEAR, one triangle of colour TRI with corners (-0.5, -0.5),
// (0.5, -0.5) and its apex at (0, 0.5). It is not symmetric top to bottom,
// so a picture shown upside down fails the checks.
//
// Usage: rig-gltri [-d CARD] [-r RENDERER] [-x COMMAND] [-f FRAMES]
//   -d CARD      DRM card (default /dev/dri/card0)
//   -r RENDERER  GL_RENDERER must contain this (default "virgl"); a driver
//                that falls back to software rendering in the guest fails
//   -x COMMAND   run COMMAND (with system()) while the picture is shown
//   -f FRAMES    then draw and show FRAMES more frames (each a new GBM
//                buffer set on the CRTC) and print the frame rate
// Prints "renderer: ...", one "pixel NAME X Y R G B A ok|BAD" line per
// checked point (GL coordinates, origin bottom left), "mode: WxH",
// "shown: fb N on crtc M" and with -f "frames: N in S s, F fps". Exits 0
// only if everything matched.
#define _GNU_SOURCE
#include <EGL/egl.h>
#include <EGL/eglext.h>
#include <GLES2/gl2.h>
#include <fcntl.h>
#include <gbm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xf86drm.h>
#include <xf86drmMode.h>

static const unsigned char CLEAR[3] = {0x20, 0x60, 0xa0};
static const unsigned char TRI[3] = {0xf0, 0xc0, 0x10};

static int fail(const char *what) {
    fprintf(stderr, "rig-gltri: %s\n", what);
    return 1;
}

struct output {
    uint32_t connector;
    uint32_t crtc;
    drmModeModeInfo mode;
};

// The first connected connector, its preferred (first) mode and a CRTC
// its encoders can drive.
static int find_output(int fd, struct output *out) {
    drmModeRes *res = drmModeGetResources(fd);
    if (!res)
        return fail("drmModeGetResources failed (not a KMS card?)");
    int found = 0;
    for (int i = 0; i < res->count_connectors && !found; i++) {
        drmModeConnector *c = drmModeGetConnector(fd, res->connectors[i]);
        if (!c)
            continue;
        if (c->connection == DRM_MODE_CONNECTED && c->count_modes > 0) {
            for (int e = 0; e < c->count_encoders && !found; e++) {
                drmModeEncoder *enc = drmModeGetEncoder(fd, c->encoders[e]);
                if (!enc)
                    continue;
                for (int k = 0; k < res->count_crtcs; k++) {
                    if (enc->possible_crtcs & (1u << k)) {
                        out->connector = c->connector_id;
                        out->crtc = res->crtcs[k];
                        out->mode = c->modes[0];
                        found = 1;
                        break;
                    }
                }
                drmModeFreeEncoder(enc);
            }
        }
        drmModeFreeConnector(c);
    }
    drmModeFreeResources(res);
    return found ? 0 : fail("no connected output with a mode and a CRTC");
}

static GLuint shader(GLenum type, const char *src) {
    GLuint s = glCreateShader(type);
    glShaderSource(s, 1, &src, NULL);
    glCompileShader(s);
    GLint ok = 0;
    glGetShaderiv(s, GL_COMPILE_STATUS, &ok);
    if (!ok) {
        char log[512] = "";
        glGetShaderInfoLog(s, sizeof log, NULL, log);
        fprintf(stderr, "rig-gltri: shader: %s\n", log);
        return 0;
    }
    return s;
}

// The program that draws the triangle, built once.
static GLuint program(void) {
    static GLuint p;
    if (p)
        return p;
    static const char *vs = "attribute vec2 pos;\n"
                            "void main() { gl_Position = vec4(pos, 0.0, 1.0); }\n";
    char fs[160];
    snprintf(fs, sizeof fs,
             "precision mediump float;\n"
             "void main() { gl_FragColor = vec4(%d.0/255.0, %d.0/255.0, %d.0/255.0, 1.0); }\n",
             TRI[0], TRI[1], TRI[2]);
    GLuint v = shader(GL_VERTEX_SHADER, vs), f = shader(GL_FRAGMENT_SHADER, fs);
    if (!v || !f)
        return 0;
    GLuint prog = glCreateProgram();
    glAttachShader(prog, v);
    glAttachShader(prog, f);
    glBindAttribLocation(prog, 0, "pos");
    glLinkProgram(prog);
    GLint ok = 0;
    glGetProgramiv(prog, GL_LINK_STATUS, &ok);
    if (!ok) {
        fail("program did not link");
        return 0;
    }
    p = prog;
    return p;
}

static int draw(int w, int h) {
    GLuint p = program();
    if (!p)
        return 1;
    static const GLfloat tri[] = {-0.5f, -0.5f, 0.5f, -0.5f, 0.0f, 0.5f};
    glViewport(0, 0, w, h);
    glClearColor(CLEAR[0] / 255.0f, CLEAR[1] / 255.0f, CLEAR[2] / 255.0f, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);
    glUseProgram(p);
    glVertexAttribPointer(0, 2, GL_FLOAT, GL_FALSE, 0, tri);
    glEnableVertexAttribArray(0);
    glDrawArrays(GL_TRIANGLES, 0, 3);
    return glGetError() == GL_NO_ERROR ? 0 : fail("GL error while drawing");
}

// Reads back one point given in normalised device coordinates and compares
// it with the colour expected there.
static int check(const char *name, float nx, float ny, int w, int h, const unsigned char *want) {
    int x = (int)((nx + 1.0f) / 2.0f * (float)w), y = (int)((ny + 1.0f) / 2.0f * (float)h);
    unsigned char px[4] = {0, 0, 0, 0};
    glReadPixels(x, y, 1, 1, GL_RGBA, GL_UNSIGNED_BYTE, px);
    int bad = 0;
    for (int i = 0; i < 3; i++)
        bad |= abs((int)px[i] - (int)want[i]) > 2;
    printf("pixel %s %d %d %d %d %d %d %s\n", name, x, y, px[0], px[1], px[2], px[3], bad ? "BAD" : "ok");
    return bad;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// Swaps, puts the new front buffer on the CRTC and releases the one shown
// before (*shown, *shown_fb). Returns 0 on success.
static int show(int fd, EGLDisplay dpy, EGLSurface surf, struct gbm_surface *gs, int w, int h,
                uint32_t crtc, uint32_t conn, drmModeModeInfo *mode, struct gbm_bo **shown,
                uint32_t *shown_fb) {
    if (!eglSwapBuffers(dpy, surf))
        return fail("eglSwapBuffers failed");
    struct gbm_bo *bo = gbm_surface_lock_front_buffer(gs);
    if (!bo)
        return fail("no front buffer");
    uint32_t fb = 0;
    if (drmModeAddFB(fd, w, h, 24, 32, gbm_bo_get_stride(bo), gbm_bo_get_handle(bo).u32, &fb))
        return fail("drmModeAddFB failed");
    if (drmModeSetCrtc(fd, crtc, fb, 0, 0, &conn, 1, mode)) {
        perror("drmModeSetCrtc");
        return 1;
    }
    if (*shown) {
        drmModeRmFB(fd, *shown_fb);
        gbm_surface_release_buffer(gs, *shown);
    }
    *shown = bo;
    *shown_fb = fb;
    return 0;
}

static int check_picture(int w, int h) {
    int bad = 0;
    bad |= check("corner", 0.9f, 0.9f, w, h, CLEAR);
    bad |= check("centre", 0.0f, -0.2f, w, h, TRI);
    bad |= check("apex", 0.0f, 0.4f, w, h, TRI);
    bad |= check("low-right", 0.25f, -0.2f, w, h, TRI);
    bad |= check("high-right", 0.25f, 0.2f, w, h, CLEAR);
    return bad;
}

int main(int argc, char **argv) {
    const char *card = "/dev/dri/card0", *want = "virgl", *cmd = NULL;
    int opt, frames = 0;
    while ((opt = getopt(argc, argv, "d:r:x:f:")) != -1) {
        switch (opt) {
        case 'd': card = optarg; break;
        case 'r': want = optarg; break;
        case 'x': cmd = optarg; break;
        case 'f': frames = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: rig-gltri [-d CARD] [-r RENDERER] [-x COMMAND] [-f FRAMES]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fd = open(card, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        perror(card);
        return 1;
    }
    struct output out;
    if (find_output(fd, &out))
        return 1;
    int w = out.mode.hdisplay, h = out.mode.vdisplay;
    printf("mode: %dx%d\n", w, h);

    struct gbm_device *gbm = gbm_create_device(fd);
    if (!gbm)
        return fail("gbm_create_device failed");
    struct gbm_surface *gs = gbm_surface_create(gbm, w, h, GBM_FORMAT_XRGB8888,
                                                GBM_BO_USE_SCANOUT | GBM_BO_USE_RENDERING);
    if (!gs)
        return fail("gbm_surface_create failed");
    EGLDisplay dpy = eglGetPlatformDisplay(EGL_PLATFORM_GBM_KHR, gbm, NULL);
    EGLint major, minor;
    if (dpy == EGL_NO_DISPLAY || !eglInitialize(dpy, &major, &minor))
        return fail("no EGL display on GBM");
    if (!eglBindAPI(EGL_OPENGL_ES_API))
        return fail("eglBindAPI failed");
    static const EGLint cfg_attrs[] = {EGL_SURFACE_TYPE, EGL_WINDOW_BIT, EGL_RED_SIZE, 8,
                                       EGL_GREEN_SIZE, 8, EGL_BLUE_SIZE, 8,
                                       EGL_RENDERABLE_TYPE, EGL_OPENGL_ES2_BIT, EGL_NONE};
    EGLConfig cfgs[64], cfg = NULL;
    EGLint n = 0;
    eglChooseConfig(dpy, cfg_attrs, cfgs, 64, &n);
    for (int i = 0; i < n; i++) {
        EGLint id = 0;
        eglGetConfigAttrib(dpy, cfgs[i], EGL_NATIVE_VISUAL_ID, &id);
        if (id == GBM_FORMAT_XRGB8888) {
            cfg = cfgs[i];
            break;
        }
    }
    if (!cfg)
        return fail("no EGL config for XRGB8888");
    static const EGLint ctx_attrs[] = {EGL_CONTEXT_CLIENT_VERSION, 2, EGL_NONE};
    EGLContext ctx = eglCreateContext(dpy, cfg, EGL_NO_CONTEXT, ctx_attrs);
    EGLSurface surf = eglCreateWindowSurface(dpy, cfg, (EGLNativeWindowType)gs, NULL);
    if (ctx == EGL_NO_CONTEXT || surf == EGL_NO_SURFACE || !eglMakeCurrent(dpy, surf, surf, ctx))
        return fail("cannot make a GLES2 context current");

    const char *renderer = (const char *)glGetString(GL_RENDERER);
    printf("egl: %d.%d %s\n", major, minor, eglQueryString(dpy, EGL_VENDOR));
    printf("vendor: %s\n", (const char *)glGetString(GL_VENDOR));
    printf("renderer: %s\n", renderer ? renderer : "(none)");
    printf("version: %s\n", (const char *)glGetString(GL_VERSION));
    if (!renderer || !strstr(renderer, want)) {
        fprintf(stderr, "rig-gltri: GL_RENDERER does not name %s\n", want);
        return 3;
    }

    if (draw(w, h))
        return 1;
    int bad = check_picture(w, h);

    struct gbm_bo *bo = NULL;
    uint32_t fb = 0;
    if (show(fd, dpy, surf, gs, w, h, out.crtc, out.connector, &out.mode, &bo, &fb))
        return 1;
    printf("shown: fb %u on crtc %u\n", fb, out.crtc);
    if (cmd) {
        int rc = system(cmd);
        if (rc != 0) {
            fprintf(stderr, "rig-gltri: '%s' exited with %d\n", cmd, rc);
            bad = 1;
        }
    }
    if (frames > 0) {
        double start = now();
        for (int i = 0; i < frames; i++) {
            if (draw(w, h) || show(fd, dpy, surf, gs, w, h, out.crtc, out.connector, &out.mode, &bo, &fb))
                return 1;
        }
        double secs = now() - start;
        printf("frames: %d in %.2f s, %.1f fps\n", frames, secs, frames / secs);
    }
    drmModeRmFB(fd, fb);
    gbm_surface_release_buffer(gs, bo);
    eglMakeCurrent(dpy, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
    eglDestroySurface(dpy, surf);
    eglDestroyContext(dpy, ctx);
    eglTerminate(dpy);
    gbm_surface_destroy(gs);
    gbm_device_destroy(gbm);
    close(fd);
    printf("result: %s\n", bad ? "BAD" : "ok");
    return bad ? 4 : 0;
}
