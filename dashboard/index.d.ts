/** The directory holding the built dashboard (`index.html` and `assets/`), as the engine serves it at `/dashboard/`. */
export declare const assetsDir: string;
